use std::fmt;
use std::str::FromStr;

/// The id of an offloaded task: 128 bits from the operating system's CSPRNG, written as 32
/// lowercase hexadecimal characters (URL-safe, unguessable).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskId([u8; 16]);

/// One write of 128 bits: the derived hash writes the array's length first and then its
/// bytes, two rounds of the map's hasher where one does.
impl std::hash::Hash for TaskId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_le_bytes(self.0));
    }
}

/// The hasher of maps keyed by [`TaskId`]: the id's own bits, folded to 64. They come from
/// the CSPRNG and no client chooses them, so a keyed hash (SipHash, the standard map's)
/// buys nothing there and costs a tenth of an offload.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, bits: u128) {
        self.0 ^= (bits as u64) ^ ((bits >> 64) as u64);
    }

    /// Not what a `TaskId` writes; for completeness, each byte folded in.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}

/// A map keyed by [`TaskId`], hashed by [`IdHasher`].
pub(crate) type IdMap<V> =
    std::collections::HashMap<TaskId, V, std::hash::BuildHasherDefault<IdHasher>>;

impl TaskId {
    /// A new random id.
    ///
    /// # Errors
    ///
    /// When the operating system has no randomness to give.
    pub fn random() -> Result<Self, NoRandomness> {
        let mut bytes = [0; 16];
        getrandom::fill(&mut bytes).map_err(NoRandomness)?;
        Ok(Self(bytes))
    }

    /// A random id for a task with an idempotency key: its first 16 bits are derived from
    /// the key's scope (`owner` and `key`), the other 112 are random. A store can then keep
    /// a task and its key in one partition: `RedisStore` puts both in one Redis Cluster
    /// hash slot. Create keyed [`NewTask`]s with it.
    ///
    /// [`NewTask`]: super::store::NewTask
    ///
    /// # Errors
    ///
    /// When the operating system has no randomness to give.
    pub fn random_for(owner: Option<&str>, key: &str) -> Result<Self, NoRandomness> {
        let mut id = Self::random()?;
        id.0[..2].copy_from_slice(&scope_tag(owner, key));
        Ok(id)
    }

    /// The first 16 bits: a store's partition for the task.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn tag(&self) -> [u8; 2] {
        [self.0[0], self.0[1]]
    }

    /// The id as bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The 32 hexadecimal digits, without going through `fmt`: an offload writes its id
    /// into the `Location` and the body at every `202`, where `fmt` machinery costs more
    /// than the rest of the answer.
    pub(crate) fn hex(&self) -> Hex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0; Hex::LEN];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        Hex(hex)
    }
}

/// A [`TaskId`] written out: 32 lowercase hexadecimal digits.
pub(crate) struct Hex([u8; Hex::LEN]);

impl Hex {
    const LEN: usize = 32;

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hexadecimal digits are ASCII")
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({self})")
    }
}

/// The partition of an idempotency scope: FNV-1a over the owner's length, the owner and the
/// key, folded to 16 bits. Stable across processes and versions, as stored keys need.
pub(crate) fn scope_tag(owner: Option<&str>, key: &str) -> [u8; 2] {
    let owner = owner.unwrap_or_default();
    let length = owner.len().to_string();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in [
        length.as_bytes(),
        b":",
        owner.as_bytes(),
        b":",
        key.as_bytes(),
    ]
    .into_iter()
    .flatten()
    {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    let folded = (hash >> 16) ^ (hash & 0xffff);
    [(folded >> 8) as u8, folded as u8]
}

/// The operating system gave no randomness for a [`TaskId`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no randomness for a task id: {0}")]
pub struct NoRandomness(getrandom::Error);

/// Text that is not a [`TaskId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a task id: expected 32 lowercase hexadecimal characters")]
pub struct InvalidTaskId;

impl FromStr for TaskId {
    type Err = InvalidTaskId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.as_bytes();
        if text.len() != Hex::LEN {
            return Err(InvalidTaskId);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(InvalidTaskId),
        };
        let mut bytes = [0; 16];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let id = TaskId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        let known = TaskId(*b"\x00\x01\x0f\x10\x7f\x80\xab\xcd\xef\xfe\xff\x09\x90\x5a\xa5\x42");
        assert_eq!(known.to_string(), "00010f107f80abcdeffeff09905aa542");
        assert_eq!(text.parse::<TaskId>(), Ok(id));
        assert_ne!(TaskId::random().unwrap(), id);
        for bad in [
            "",
            "abc",
            &text.to_uppercase(),
            &format!("{text}0"),
            &text[1..],
            "g".repeat(32).as_str(),
            "../../etc/passwd/aaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(bad.parse::<TaskId>(), Err(InvalidTaskId), "{bad:?}");
        }
    }
}
