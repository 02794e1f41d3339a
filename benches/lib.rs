//! What the benches of `tower-serverless` share.

/// The median of `values` (of an even count, the upper of the two middle ones); `NaN`, which
/// prints as such, when there are none.
///
/// ```
/// use tower_serverless_benches::median;
///
/// assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
/// assert!(median(Vec::new()).is_nan());
/// ```
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The count in environment variable `name`, or `default` when it is unset or empty.
///
/// # Panics
///
/// When it holds anything but a whole number above 0: a run that silently took its default
/// instead, or measured nothing, would print figures for settings it was not given.
///
/// ```
/// assert_eq!(tower_serverless_benches::count_from_env("NO_SUCH_BENCH_SETTING", 7), 7);
/// ```
pub fn count_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => match value.parse() {
            Ok(count) if count > 0 => count,
            _ => panic!("{name} must be a whole number above 0, not {value:?}"),
        },
        _ => default,
    }
}

/// The axum app the benches serve: `POST /hello`, whose handler awaits once, as one that
/// does I/O does (every timer in a stack is then registered). POST, so that
/// `OffloadLayer` races every request (its fast path) instead of passing it by.
pub fn hello_routes() -> axum::Router {
    axum::Router::new().route(
        "/hello",
        axum::routing::post(|| async {
            tokio::task::yield_now().await;
            "hello"
        }),
    )
}
