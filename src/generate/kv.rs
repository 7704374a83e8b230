//! The key/value cache in fixed slots: one buffer per layer and per key/value, shaped
//! `[slots, kv_heads, max_context, head_dim]`, allocated once and never moved.
//!
//! A step binds a view of contiguous rows (`[rows, kv_heads, max_context, head_dim]` at a
//! row offset) as both the past and the present of ONNX Runtime's GroupQueryAttention,
//! which then writes each row's new keys and values in place at that row's own length.
//! Running rows are kept contiguous from row 0, so a decode step costs the rows it runs,
//! not every slot: when a sequence leaves, the last row is moved into its place once.

/// The cache's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub layers: usize,
    pub slots: usize,
    pub kv_heads: usize,
    pub max_context: usize,
    pub head_dim: usize,
}

impl KvShape {
    /// Floats in one row (one slot) of one buffer.
    pub fn row_len(&self) -> usize {
        self.kv_heads * self.max_context * self.head_dim
    }

    /// Bytes of the whole cache, keys and values of every layer.
    pub fn bytes(&self) -> usize {
        2 * self.layers * self.slots * self.row_len() * std::mem::size_of::<f32>()
    }
}

/// The buffers. Their memory is zeroed lazily by the OS (`vec![0.0; n]` asks for zeroed
/// pages), so resident memory grows with the context actually used.
pub struct KvCache {
    shape: KvShape,
    /// `[layer][0 = key, 1 = value]`. Boxed slices: their length never changes, so the
    /// pointers ONNX Runtime is given stay valid for the cache's lifetime.
    buffers: Vec<[Box<[f32]>; 2]>,
}

impl KvCache {
    pub fn new(shape: KvShape) -> KvCache {
        let n = shape.slots * shape.row_len();
        let buffers = (0..shape.layers)
            .map(|_| {
                [
                    vec![0.0f32; n].into_boxed_slice(),
                    vec![0.0f32; n].into_boxed_slice(),
                ]
            })
            .collect();
        KvCache { shape, buffers }
    }

    pub fn shape(&self) -> KvShape {
        self.shape
    }

    /// The start of `rows` rows from `first` in layer `layer`'s key (`kind` 0) or value
    /// (`kind` 1) buffer: what a step binds. Panics if the rows are out of range.
    pub fn rows_ptr(&mut self, layer: usize, kind: usize, first: usize, rows: usize) -> *mut f32 {
        assert!(
            first + rows <= self.shape.slots,
            "rows {first}+{rows} out of range"
        );
        let offset = first * self.shape.row_len();
        self.buffers[layer][kind][offset..].as_mut_ptr()
    }

    /// Moves the first `len` positions of row `from` to row `to` in every buffer (a sequence
    /// changes row once, when the sequence before it leaves). Costs `len` positions per
    /// head and layer, not the whole row.
    pub fn move_row(&mut self, from: usize, to: usize, len: usize) {
        let s = self.shape;
        assert!(from < s.slots && to < s.slots && len <= s.max_context);
        if from == to || len == 0 {
            return;
        }
        let per_head = s.max_context * s.head_dim;
        for pair in &mut self.buffers {
            for buf in pair.iter_mut() {
                for h in 0..s.kv_heads {
                    let src = from * s.row_len() + h * per_head;
                    let dst = to * s.row_len() + h * per_head;
                    buf.copy_within(src..src + len * s.head_dim, dst);
                }
            }
        }
    }

    /// One position of one head of a row, for tests.
    #[cfg(test)]
    pub fn at(&self, layer: usize, kind: usize, row: usize, head: usize, pos: usize) -> &[f32] {
        let s = self.shape;
        let start = row * s.row_len() + (head * s.max_context + pos) * s.head_dim;
        &self.buffers[layer][kind][start..start + s.head_dim]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> KvShape {
        KvShape {
            layers: 2,
            slots: 3,
            kv_heads: 2,
            max_context: 5,
            head_dim: 4,
        }
    }

    #[test]
    fn move_row_copies_the_used_positions_of_every_head() {
        let mut kv = KvCache::new(shape());
        for layer in 0..2 {
            for kind in 0..2 {
                let p = kv.rows_ptr(layer, kind, 2, 1);
                let row = unsafe { std::slice::from_raw_parts_mut(p, shape().row_len()) };
                for (i, x) in row.iter_mut().enumerate() {
                    *x = (layer * 1000 + kind * 100 + i) as f32;
                }
            }
        }
        kv.move_row(2, 0, 3);
        let s = shape();
        for layer in 0..2 {
            for kind in 0..2 {
                for head in 0..2 {
                    for pos in 0..5 {
                        let want: Vec<f32> = (0..4)
                            .map(|d| {
                                let i = (head * s.max_context + pos) * s.head_dim + d;
                                (layer * 1000 + kind * 100 + i) as f32
                            })
                            .collect();
                        let got = kv.at(layer, kind, 0, head, pos);
                        if pos < 3 {
                            assert_eq!(got, &want[..], "layer {layer} kind {kind} head {head}");
                        } else {
                            assert_eq!(got, &[0.0; 4], "positions past len stay untouched");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bytes_counts_keys_and_values_of_every_layer() {
        assert_eq!(shape().bytes(), 2 * 2 * 3 * (2 * 5 * 4) * 4);
    }
}
