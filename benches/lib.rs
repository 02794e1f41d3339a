//! What the benches of `tower-serverless` share.

/// The median of `values` (of an even count, the upper of the two middle ones).
///
/// ```
/// assert_eq!(tower_serverless_benches::median(vec![3.0, 1.0, 2.0]), 2.0);
/// ```
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
