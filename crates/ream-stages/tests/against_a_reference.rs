//! Group + Accumulate on random data, split into random batches, agree with a naive
//! reference computed row by row: the same groups, in order, with the same variables.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use proptest::prelude::*;
use ream_core::spec::Aggregate;
use ream_core::{Event, Value};
use ream_stages::{run_chain, StageConfig, VariableSpec};

type Row = (u8, Option<u8>, Option<i64>);
type Footer = (usize, Value, Vec<Value>);

/// Rows sorted by (a, b): a and b are small categories (b may be NULL), v a nullable int.
fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((0u8..3, prop::option::of(0u8..3), prop::option::of(-50i64..50)), 0..120).prop_map(|mut r| {
        r.sort_by_key(|x| (x.0, x.1));
        r
    })
}

fn batch(schema: &Arc<Schema>, rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(rows.iter().map(|r| Some(format!("a{}", r.0))).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.1.map(|b| format!("b{b}"))).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

proptest! {
    #[test]
    fn stages_agree_with_a_row_by_row_reference(rows in rows(), cuts in prop::collection::vec(1usize..9, 1..40)) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        // Variables: sum and count per inner group, count_distinct and max per outer group, rows overall.
        let vars = vec![
            VariableSpec { name: "v".into(), aggregate: Aggregate::Sum, field: Some(2), reset_level: Some(1) },
            VariableSpec { name: "v".into(), aggregate: Aggregate::Count, field: Some(2), reset_level: Some(1) },
            VariableSpec { name: "v".into(), aggregate: Aggregate::CountDistinct, field: Some(2), reset_level: Some(0) },
            VariableSpec { name: "v".into(), aggregate: Aggregate::Max, field: Some(2), reset_level: Some(0) },
            VariableSpec { name: "v".into(), aggregate: Aggregate::Count, field: None, reset_level: None },
        ];
        let mut stages: Vec<_> = [StageConfig::Group { fields: vec![0, 1] }, StageConfig::Accumulate { variables: vars }]
            .iter().map(|c| c.build(&schema).unwrap()).collect();
        // Split the rows at random batch sizes.
        let mut events = Vec::new();
        let (mut i, mut c) = (0, 0);
        while i < rows.len() {
            let n = cuts[c % cuts.len()].min(rows.len() - i);
            events.push(Event::Rows(batch(&schema, &rows[i..i + n])));
            i += n;
            c += 1;
        }
        events.push(Event::End { variables: Arc::from(vec![]), rows: rows.len() as u64, charts: Arc::from(vec![]) });
        let got: Vec<Footer> = run_chain(&mut stages, events).unwrap().into_iter().filter_map(|e| match e {
            Event::GroupFooter { level, key, variables } => Some((level, key, variables.to_vec())),
            _ => None,
        }).collect();

        // The reference: walk the rows once, with maps.
        let mut want: Vec<Footer> = Vec::new();
        let mut outer: BTreeMap<u8, Vec<&Row>> = BTreeMap::new();
        for r in &rows { outer.entry(r.0).or_default().push(r); }
        let mut seen = 0i64;
        let int = |x: Option<i64>| x.map(Value::Int).unwrap_or(Value::Null);
        for (a, a_rows) in &outer {
            let mut distinct = HashSet::new();
            let mut max: Option<i64> = None;
            let mut inner: Vec<(Option<u8>, Vec<&Row>)> = Vec::new();
            for r in a_rows {
                match inner.last_mut() { Some((b, v)) if *b == r.1 => v.push(r), _ => inner.push((r.1, vec![r])) }
            }
            for (b, b_rows) in &inner {
                let vals: Vec<i64> = b_rows.iter().filter_map(|r| r.2).collect();
                for v in &vals { distinct.insert(*v); max = Some(max.map_or(*v, |m: i64| m.max(*v))); }
                seen += b_rows.len() as i64;
                let sum = if vals.is_empty() { None } else { Some(vals.iter().sum()) };
                let key = b.map(|b| Value::Str(format!("b{b}").into())).unwrap_or(Value::Null);
                want.push((1, key, vec![int(sum), Value::Int(vals.len() as i64), Value::Int(distinct.len() as i64), int(max), Value::Int(seen)]));
            }
            let last = want.last().unwrap().2.clone();
            want.push((0, Value::Str(format!("a{a}").into()), last));
        }
        // After an inner footer its sum/count reset; the outer footer shows them reset.
        for w in want.iter_mut().filter(|w| w.0 == 0) {
            w.2[0] = Value::Null;
            w.2[1] = Value::Int(0);
        }
        prop_assert_eq!(got, want);
    }
}
