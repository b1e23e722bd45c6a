//! Streaming M4 downsampling: points arrive in any order and any number; at most
//! `max_points` come out, and among them each column's first and last point (by x) and
//! its smallest and largest (by y). So the global first, last, minimum and maximum always
//! survive, and a line drawn through the result has the same envelope, column by column,
//! as one drawn through every point (Jugel et al., "M4", VLDB 2014).
//!
//! M4 needs the x range to cut columns, and a stream does not know it up front. So the
//! first `max_points` points are kept as they are (a small chart is exact); past that, the
//! columns are `2^e` wide, aligned on multiples of their width, and when the values
//! outgrow `max_points / 4` columns the width doubles and neighbouring columns merge. A
//! merge of M4 cells is exact (first of firsts, min of mins…), so the result is what M4
//! would give with the final width, whatever the arrival order and batch sizes.

use std::collections::BTreeMap;

/// A point, with its arrival number: two cells may hold the same point, and the number
/// tells them apart from equal-valued neighbours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
    pub seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    first: Pt,
    last: Pt,
    min: Pt,
    max: Pt,
}

impl Cell {
    fn new(p: Pt) -> Cell {
        Cell { first: p, last: p, min: p, max: p }
    }

    // Ties keep the earlier arrival, so the result does not depend on how rows were batched.
    fn add(&mut self, p: Pt) {
        if before(p, self.first) {
            self.first = p;
        }
        if before(self.last, p) {
            self.last = p;
        }
        if (p.y, p.seq) < (self.min.y, self.min.seq) {
            self.min = p;
        }
        if p.y > self.max.y || (p.y == self.max.y && p.seq < self.max.seq) {
            self.max = p;
        }
    }

    fn merge(&mut self, o: Cell) {
        for p in [o.first, o.last, o.min, o.max] {
            self.add(p);
        }
    }
}

/// Whether `a` comes before `b` along x (arrival breaks ties).
fn before(a: Pt, b: Pt) -> bool {
    (a.x, a.seq) < (b.x, b.seq)
}

/// M4 over a stream of finite points.
#[derive(Debug, Clone)]
pub struct M4 {
    max_points: usize,
    columns: i64,
    /// Columns are `2^exp` wide; `None` while the first points are kept as they are.
    exp: Option<i32>,
    /// `2^-exp`, kept beside `exp` so a point's column is one multiplication.
    scale: f64,
    pending: Vec<Pt>,
    cells: BTreeMap<i64, Cell>,
    /// The column the last point fell in, kept out of the map: points that arrive in x
    /// order (a time series, a key) hit it again and again.
    hot: Option<(i64, Cell)>,
    seen: u64,
}

impl M4 {
    /// At most `max_points` (at least 8) points come out.
    pub fn new(max_points: usize) -> M4 {
        let max_points = max_points.max(8);
        M4 {
            max_points,
            columns: (max_points / 4) as i64,
            exp: None,
            scale: 1.0,
            pending: Vec::new(),
            cells: BTreeMap::new(),
            hot: None,
            seen: 0,
        }
    }

    /// Points pushed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Add a point; non-finite coordinates are the caller's to filter out.
    pub fn push(&mut self, x: f64, y: f64) {
        let p = Pt { x, y, seq: self.seen };
        self.seen += 1;
        match self.exp {
            None => {
                self.pending.push(p);
                if self.pending.len() > self.max_points {
                    self.start_columns();
                }
            }
            Some(_) => self.insert(p),
        }
    }

    fn start_columns(&mut self) {
        let lo = self.pending.iter().map(|p| p.x).fold(f64::INFINITY, f64::min);
        let hi = self.pending.iter().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max);
        let range = hi - lo;
        let mut exp = if range > 0.0 { (range / self.columns as f64).log2().floor() as i32 } else { 0 };
        while column(hi, exp) - column(lo, exp) >= self.columns {
            exp += 1;
        }
        self.set_exp(exp);
        for p in std::mem::take(&mut self.pending) {
            self.insert(p);
        }
    }

    fn set_exp(&mut self, exp: i32) {
        self.exp = Some(exp);
        self.scale = (-exp as f64).exp2();
    }

    #[inline]
    fn insert(&mut self, p: Pt) {
        // Scaling by a power of two is exact, so a column is the same however it is computed.
        let k = (p.x * self.scale).floor() as i64;
        match &mut self.hot {
            Some((hk, c)) if *hk == k => c.add(p),
            _ => {
                self.cool();
                self.hot = Some((k, Cell::new(p)));
                self.fit();
            }
        }
    }

    /// Put the hot column back into the map.
    fn cool(&mut self) {
        if let Some((k, c)) = self.hot.take() {
            self.cells.entry(k).and_modify(|m| m.merge(c)).or_insert(c);
        }
    }

    /// Widen the columns until the points span at most `columns` of them.
    fn fit(&mut self) {
        loop {
            let hot = self.hot.map(|(k, _)| k);
            let lo = self.cells.first_key_value().map(|(k, _)| *k).into_iter().chain(hot).min();
            let hi = self.cells.last_key_value().map(|(k, _)| *k).into_iter().chain(hot).max();
            let (Some(lo), Some(hi)) = (lo, hi) else { return };
            if hi - lo < self.columns {
                return;
            }
            // Twice as wide: column k becomes k div 2.
            self.cool();
            let exp = self.exp.expect("started") + 1;
            self.set_exp(exp);
            let old = std::mem::take(&mut self.cells);
            for (k, c) in old {
                self.cells.entry(k.div_euclid(2)).and_modify(|m| m.merge(c)).or_insert(c);
            }
        }
    }

    /// Whether points were dropped (more came in than go out).
    pub fn reduced(&self) -> bool {
        self.exp.is_some()
    }

    /// The kept points, in x order (arrival breaks ties).
    pub fn finish(mut self) -> Vec<Pt> {
        self.cool();
        let mut out: Vec<Pt> = if self.exp.is_none() {
            self.pending
        } else {
            let mut v = Vec::with_capacity(self.cells.len() * 4);
            for c in self.cells.values() {
                let mut four = [c.first, c.min, c.max, c.last];
                four.sort_by(|a, b| (a.x, a.seq).partial_cmp(&(b.x, b.seq)).expect("finite"));
                for (i, p) in four.iter().enumerate() {
                    if i == 0 || four[i - 1].seq != p.seq {
                        v.push(*p);
                    }
                }
            }
            v
        };
        out.sort_by(|a, b| (a.x, a.seq).partial_cmp(&(b.x, b.seq)).expect("finite"));
        out
    }
}

/// The column of `x` at width `2^exp` (scaling by a power of two is exact).
fn column(x: f64, exp: i32) -> i64 {
    (x * (-exp as f64).exp2()).floor() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(points: &[(f64, f64)], max: usize) -> Vec<Pt> {
        let mut m = M4::new(max);
        for (x, y) in points {
            m.push(*x, *y);
        }
        m.finish()
    }

    #[test]
    fn small_inputs_come_out_whole_in_x_order() {
        let out = run(&[(3.0, 1.0), (1.0, 5.0), (2.0, -1.0)], 500);
        assert_eq!(out.iter().map(|p| (p.x, p.y)).collect::<Vec<_>>(), vec![(1.0, 5.0), (2.0, -1.0), (3.0, 1.0)]);
    }

    #[test]
    fn a_million_points_become_at_most_max_points() {
        let pts: Vec<(f64, f64)> = (0..1_000_000).map(|i| (i as f64, ((i as f64) / 1000.0).sin())).collect();
        let out = run(&pts, 500);
        assert!(out.len() <= 500 && out.len() > 300, "{}", out.len());
        // In x order (the hot column's path): the ends and both extremes survive.
        assert_eq!((out[0].x, out[out.len() - 1].x), (0.0, 999_999.0));
        let max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        assert!(out.iter().any(|p| p.y == max) && out.iter().any(|p| p.y == min));
    }

    proptest! {
        #[test]
        fn downsampling_keeps_the_extremes_and_the_ends(
            pts in prop::collection::vec((-1e6f64..1e6, -1e9f64..1e9), 1..3000),
            max in 8usize..200,
        ) {
            let out = run(&pts, max);
            prop_assert!(out.len() <= max.max(8));
            let min_y = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let max_y = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let min_x = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            let max_x = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(out.iter().any(|p| p.y == min_y));
            prop_assert!(out.iter().any(|p| p.y == max_y));
            prop_assert_eq!(out.first().unwrap().x, min_x);
            prop_assert_eq!(out.last().unwrap().x, max_x);
            // Every point that comes out went in.
            for p in &out {
                prop_assert_eq!(pts[p.seq as usize], (p.x, p.y));
            }
        }
    }
}
