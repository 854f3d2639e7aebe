//! The raw table's text columns as the decoder fills them: bytes, offsets and validity in
//! plain vectors, appended inline, sized on request, handed to Arrow without a copy.
//!
//! Arrow's `StringBuilder` does the same work behind a call per value (a record appends
//! some thirty text cells, most of them one after another), and cannot be sized again
//! once it holds rows. The array built here is the one `StringBuilder` builds: the same
//! offsets, bytes and validity bits, no validity buffer when no cell is null.

use arrow::array::StringArray;
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};

/// A text column being filled.
#[derive(Debug)]
pub(super) struct TextColumn {
    /// Every value's bytes, one after another.
    values: Vec<u8>,
    /// Where each value ends in `values`, after a leading 0: rows + 1 entries.
    offsets: Vec<i32>,
    /// Validity bits, least significant first, a byte per eight rows.
    valid: Vec<u8>,
}

impl Default for TextColumn {
    fn default() -> Self {
        TextColumn {
            values: Vec::new(),
            offsets: vec![0],
            valid: Vec::new(),
        }
    }
}

impl TextColumn {
    /// Rows appended so far.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Bytes of the values so far.
    pub(super) fn value_bytes(&self) -> usize {
        self.values.len()
    }

    /// Room for `rows` more rows of `bytes` more bytes in all, exactly: no doubling.
    pub(super) fn reserve(&mut self, rows: usize, bytes: usize) {
        self.values.reserve_exact(bytes);
        self.offsets.reserve_exact(rows);
        self.valid
            .reserve_exact((self.len() + rows).div_ceil(8) - self.valid.len());
    }

    #[inline]
    pub(super) fn append_value(&mut self, v: &str) {
        self.values.extend_from_slice(v.as_bytes());
        self.end_row(true);
    }

    #[inline]
    pub(super) fn append_null(&mut self) {
        self.end_row(false);
    }

    #[inline]
    pub(super) fn append_option(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.append_value(v),
            None => self.append_null(),
        }
    }

    #[inline]
    fn end_row(&mut self, valid: bool) {
        let row = self.len();
        // i32 offsets, as `StringBuilder`'s; it panics past 2 GiB of text too, and a batch
        // is flushed long before (a partition's budget share).
        let end = i32::try_from(self.values.len()).expect("a text column holds under 2 GiB");
        self.offsets.push(end);
        if row.is_multiple_of(8) {
            self.valid.push(0);
        }
        if let Some(byte) = self.valid.last_mut() {
            *byte |= u8::from(valid) << (row % 8);
        }
    }

    /// Hands out the column as an Arrow array and starts empty.
    pub(super) fn finish(&mut self) -> StringArray {
        let TextColumn {
            values,
            offsets,
            valid,
        } = std::mem::take(self);
        let len = offsets.len() - 1;
        let set: usize = valid.iter().map(|b| b.count_ones() as usize).sum();
        let nulls = (set < len)
            .then(|| NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(valid), 0, len)));
        StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(values),
            nulls,
        )
        .expect("rows appended from &str are valid UTF-8 at every offset")
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, StringBuilder};
    use proptest::prelude::*;

    use super::TextColumn;

    proptest! {
        /// The same array as Arrow's `StringBuilder` from the same cells, buffers included,
        /// whatever was reserved, across two batches.
        #[test]
        fn the_same_array_as_a_string_builder(
            batches in proptest::collection::vec(
                proptest::collection::vec(proptest::option::of(".{0,6}"), 0..40), 1..3),
            reserve in 0usize..50,
        ) {
            let mut ours = TextColumn::default();
            ours.reserve(reserve, reserve * 3);
            let mut theirs = StringBuilder::new();
            for cells in &batches {
                for cell in cells {
                    ours.append_option(cell.as_deref());
                    theirs.append_option(cell.as_deref());
                }
                prop_assert_eq!(ours.len(), cells.len());
                let (a, b) = (ours.finish(), theirs.finish());
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(a.to_data(), b.to_data());
                prop_assert_eq!(a.nulls().is_some(), b.nulls().is_some());
                prop_assert_eq!(a.value_offsets(), b.value_offsets());
                prop_assert_eq!(a.values(), b.values());
            }
        }
    }
}
