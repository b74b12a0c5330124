//! [`ListIds`]: the small set of lists a contact belongs to, in 24 bytes.
//!
//! Most contacts belong to a handful of lists, so up to [`INLINE`] ids live inside the
//! contact itself and only contacts in more lists pay for a heap block. A `Vec<u32>` would
//! cost 24 bytes plus a heap block for every contact in any list (issue 6 counts bytes per
//! contact).

/// How many ids fit without a heap block.
const INLINE: usize = 5;

/// An unordered set of list ids (the caller guarantees no id is pushed twice).
#[derive(Debug, Clone)]
pub(crate) enum ListIds {
    /// `len` ids in `ids[..len]`.
    Inline { len: u8, ids: [u32; INLINE] },
    /// `block[0]` is the length, `block[1..=len]` the ids, the rest spare capacity.
    Heap(Box<[u32]>),
}

impl Default for ListIds {
    fn default() -> Self {
        Self::Inline {
            len: 0,
            ids: [0; INLINE],
        }
    }
}

impl ListIds {
    /// The ids, in no particular order.
    pub(crate) fn as_slice(&self) -> &[u32] {
        match self {
            Self::Inline { len, ids } => &ids[..usize::from(*len)],
            Self::Heap(block) => &block[1..=block[0] as usize],
        }
    }

    /// Adds `id`; amortized O(1).
    pub(crate) fn push(&mut self, id: u32) {
        match self {
            Self::Inline { len, ids } if usize::from(*len) < INLINE => {
                ids[usize::from(*len)] = id;
                *len += 1;
            }
            Self::Inline { ids, .. } => {
                let mut block = vec![0u32; 1 + 2 * INLINE];
                block[0] = INLINE as u32 + 1;
                block[1..=INLINE].copy_from_slice(ids);
                block[INLINE + 1] = id;
                *self = Self::Heap(block.into_boxed_slice());
            }
            Self::Heap(block) => {
                let len = block[0] as usize;
                if len + 1 == block.len() {
                    let mut grown = vec![0u32; 1 + 2 * len];
                    grown[..=len].copy_from_slice(block);
                    *block = grown.into_boxed_slice();
                }
                block[len + 1] = id;
                block[0] += 1;
            }
        }
    }

    /// Replaces `old` by `new` if present (the caller guarantees `new` is not); O(number of
    /// ids).
    pub(crate) fn replace(&mut self, old: u32, new: u32) {
        let ids = match self {
            Self::Inline { len, ids } => &mut ids[..usize::from(*len)],
            Self::Heap(block) => {
                let n = block[0] as usize;
                &mut block[1..=n]
            }
        };
        if let Some(id) = ids.iter_mut().find(|x| **x == old) {
            *id = new;
        }
    }

    /// Removes `id` if present; O(number of ids).
    pub(crate) fn remove(&mut self, id: u32) {
        match self {
            Self::Inline { len, ids } => {
                let n = usize::from(*len);
                if let Some(i) = ids[..n].iter().position(|&x| x == id) {
                    ids[i] = ids[n - 1];
                    *len -= 1;
                }
            }
            Self::Heap(block) => {
                let n = block[0] as usize;
                if let Some(i) = block[1..=n].iter().position(|&x| x == id) {
                    block[1 + i] = block[n];
                    block[0] -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks() {
        let mut set = ListIds::default();
        assert_eq!(size_of::<ListIds>(), 24);
        for i in 0..100 {
            set.push(i);
            let mut got = set.as_slice().to_vec();
            got.sort_unstable();
            assert_eq!(got, (0..=i).collect::<Vec<_>>());
        }
        for i in (0..100).step_by(2) {
            set.remove(i);
        }
        set.remove(1000);
        let mut got = set.as_slice().to_vec();
        got.sort_unstable();
        assert_eq!(got, (1..100).step_by(2).collect::<Vec<_>>());
        let mut small = ListIds::default();
        small.push(7);
        small.push(8);
        small.remove(7);
        assert_eq!(small.as_slice(), [8]);
        small.replace(8, 3);
        small.replace(9, 4);
        assert_eq!(small.as_slice(), [3]);
        set.replace(99, 0);
        assert!(set.as_slice().contains(&0) && !set.as_slice().contains(&99));
    }
}
