use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use ream_core::{Event, Value};

use crate::{Stage, StageError};

/// Group breaks. Rows arrive ordered by the group fields; a break at level `d` closes the
/// groups at levels `d..` (innermost first) and opens new ones. The last key seen is kept
/// between batches, so a group that spans batches is one group.
pub struct Group {
    fields: Vec<usize>,
    current: Option<Vec<Value>>,
}

impl Group {
    pub fn new(fields: Vec<usize>) -> Self {
        Group { fields, current: None }
    }

    fn close_from(&mut self, level: usize, out: &mut Vec<Event>) {
        if let Some(keys) = &self.current {
            for l in (level..self.fields.len()).rev() {
                out.push(Event::GroupFooter { level: l, key: keys[l].clone(), variables: Arc::from(Vec::new()) });
            }
        }
    }
}

impl Stage for Group {
    fn push(&mut self, event: Event, out: &mut Vec<Event>) -> Result<(), StageError> {
        let batch = match event {
            Event::Rows(b) if !self.fields.is_empty() => b,
            Event::End { .. } => {
                self.close_from(0, out);
                self.current = None;
                out.push(event);
                return Ok(());
            }
            other => {
                out.push(other);
                return Ok(());
            }
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let cols: Vec<ArrayRef> = self.fields.iter().map(|&i| batch.column(i).clone()).collect();
        let ranges = arrow_ord::partition::partition(&cols)
            .map_err(|e| StageError::Compute { stage: "group", message: e.to_string() })?
            .ranges();
        for r in ranges {
            let keys: Vec<Value> = cols.iter().map(|c| Value::from_array(c.as_ref(), r.start)).collect();
            let changed_at = match &self.current {
                None => Some(0),
                Some(cur) => cur.iter().zip(&keys).position(|(a, b)| !same_key(a, b)),
            };
            if let Some(level) = changed_at {
                if self.current.is_some() {
                    self.close_from(level, out);
                }
                for (l, key) in keys.iter().enumerate().skip(level) {
                    out.push(Event::GroupHeader { level: l, key: key.clone(), first: slice(&batch, r.start, 1) });
                }
                self.current = Some(keys);
            }
            out.push(Event::Rows(slice(&batch, r.start, r.end - r.start)));
        }
        Ok(())
    }
}

/// Keys compare as the database grouped them: NULL equals NULL, NaN equals NaN.
fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        _ => a == b,
    }
}

fn slice(b: &RecordBatch, offset: usize, len: usize) -> RecordBatch {
    if offset == 0 && len == b.num_rows() {
        b.clone()
    } else {
        b.slice(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn batches(rows: &[(&str, &str, i64)], size: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        rows.chunks(size)
            .map(|c| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from(c.iter().map(|r| r.0).collect::<Vec<_>>())),
                        Arc::new(StringArray::from(c.iter().map(|r| r.1).collect::<Vec<_>>())),
                        Arc::new(Int64Array::from(c.iter().map(|r| r.2).collect::<Vec<_>>())),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    /// The structure as text: `[a` opens level 0 with key a, `]0` closes level 0, numbers are rows.
    fn shape(rows: &[(&str, &str, i64)], size: usize) -> String {
        let mut g = Group::new(vec![0, 1]);
        let mut out = Vec::new();
        for b in batches(rows, size) {
            g.push(Event::Rows(b), &mut out).unwrap();
        }
        g.push(Event::End { variables: Arc::from(vec![]), rows: 0, charts: Arc::from(vec![]) }, &mut out).unwrap();
        out.iter()
            .map(|e| match e {
                Event::GroupHeader { level, key, .. } => format!("[{level}{key}"),
                Event::GroupFooter { level, .. } => format!("]{level}"),
                Event::Rows(b) => {
                    let v = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
                    v.values().iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
                }
                Event::End { .. } => "end".into(),
                Event::Begin(_) => "begin".into(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn groups_span_batch_boundaries() {
        let rows = [("e", "x", 1), ("e", "x", 2), ("e", "y", 3), ("w", "y", 4), ("w", "y", 5)];
        let normalise = |s: String| {
            // Row slices split differently with batch size; the group structure must not.
            s.split(' ')
                .filter(|t| t.starts_with('[') || t.starts_with(']') || *t == "end")
                .collect::<Vec<_>>()
                .join(" ")
        };
        let expect = "[0e [1x ]1 [1y ]1 ]0 [0w [1y ]1 ]0 end";
        for size in [1, 2, 3, 7, 1000] {
            assert_eq!(normalise(shape(&rows, size)), expect, "batch size {size}");
        }
        // In one batch, each group's rows arrive as one slice.
        assert_eq!(shape(&rows, 1000), "[0e [1x 1,2 ]1 [1y 3 ]1 ]0 [0w [1y 4,5 ]1 ]0 end");
    }

    #[test]
    fn an_inner_key_repeating_under_a_new_outer_key_is_a_new_group() {
        let rows = [("e", "y", 1), ("w", "y", 2)];
        assert_eq!(shape(&rows, 1), "[0e [1y 1 ]1 ]0 [0w [1y 2 ]1 ]0 end");
    }
}
