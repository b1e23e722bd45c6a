//! Burst outputs: one read, in the order of the spec's `burst.by` field first, written as
//! one complete output per value of that field (a customer's statement): its own title,
//! page numbering, groups and totals, each with the file name and recipient its
//! templates give. Only one burst is open at a time, so memory stays flat however many
//! there are.
//!
//! [`Bursts`] is the process thread's writer: it cuts the rows where the value changes
//! and runs each burst through stages and a renderer of its own. The consumer writes the
//! bursts as the parts of a split output ([`crate::Run::write_parts`]), the manifest
//! listing each with its recipient.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow_array::RecordBatch;
use ream_core::params::ParamValue;
use ream_core::parsed::BurstPlan;
use ream_core::{Event, ReportMeta, Value};
use ream_render::{Format, RenderOptions, Renderer};
use ream_stages::{Stage, StageConfig};
use sha2::{Digest, Sha256};

use crate::outlet::{finish_renderer, Outlet};
use crate::reading::Progress;
use crate::split::PartId;
use crate::EngineError;

/// The burst being written.
struct Open {
    stages: Vec<Box<dyn Stage>>,
    renderer: Box<dyn Renderer>,
    key: Value,
    rows: u64,
}

/// The process thread's writer of a burst run.
pub(crate) struct Bursts {
    format: Format,
    render: RenderOptions,
    stages: Vec<StageConfig>,
    plan: BurstPlan,
    /// The run's parameters, which the templates may use besides the burst's fields.
    params: HashMap<String, Value>,
    meta: Option<Arc<ReportMeta>>,
    by_index: usize,
    open: Option<Open>,
    /// A hash of each file name given so far (16 bytes a burst, where the names and
    /// their values were 1.6 KiB with the manifest's entries: BENCHMARKS.md).
    names: HashSet<u128>,
    progress: Arc<Progress>,
}

fn render_err(report: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Render { report: report.to_string(), message: e.to_string() }
}

impl Bursts {
    pub fn new(
        format: Format,
        render: RenderOptions,
        stages: Vec<StageConfig>,
        plan: BurstPlan,
        meta: &ReportMeta,
        progress: Arc<Progress>,
    ) -> Bursts {
        // A list parameter reads as `a, b`, as in the title.
        let params = (meta.parameters.iter())
            .map(|(name, v)| {
                let value = match v {
                    ParamValue::One(v) => v.clone(),
                    ParamValue::List(vs) => {
                        Value::Str(vs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ").into())
                    }
                };
                (name.clone(), value)
            })
            .collect();
        Bursts {
            format,
            render,
            stages,
            plan,
            params,
            meta: None,
            by_index: 0,
            open: None,
            names: HashSet::new(),
            progress,
        }
    }

    /// Take one event as the source gives it (the stages are each burst's own).
    pub fn push(&mut self, event: &Event, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        match event {
            Event::Begin(meta) => {
                let by = &self.plan.by;
                self.by_index = meta
                    .schema
                    .index_of(by)
                    .map_err(|_| EngineError::Usage(format!("burst.by: the report has no field `{by}`")))?;
                self.meta = Some(meta.clone());
                Ok(())
            }
            Event::Rows(batch) => self.rows(batch, buf, outlet),
            Event::End { .. } => self.close(buf, outlet),
            Event::GroupHeader { .. } | Event::GroupFooter { .. } => Ok(()),
        }
    }

    fn report(&self) -> String {
        self.meta.as_ref().map(|m| m.report.clone()).unwrap_or_default()
    }

    fn rows(&mut self, batch: &RecordBatch, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        let mut start = 0;
        while start < batch.num_rows() {
            let (key, same) = self.key_run(batch, start);
            if self.open.as_ref().is_some_and(|o| o.key != key) {
                self.close(buf, outlet)?;
            }
            if self.open.is_none() {
                self.start(batch, start, key, buf, outlet)?;
            }
            let piece = batch.slice(start, same);
            self.through(Event::Rows(piece), buf, outlet)?;
            if let Some(open) = self.open.as_mut() {
                open.rows += same as u64;
            }
            start += same;
        }
        Ok(())
    }

    /// The `by` value at `row` and how many rows from there share it.
    fn key_run(&self, batch: &RecordBatch, row: usize) -> (Value, usize) {
        let column = batch.column(self.by_index).as_ref();
        let key = Value::from_array(column, row);
        let same = crate::split::run_length(column, row, |i| Value::from_array(column, i) == key);
        (key, same)
    }

    /// A template filled from the burst's first row and the run's parameters.
    fn fill(&self, template: &ream_core::template::Template, batch: &RecordBatch, row: usize) -> String {
        let schema = batch.schema();
        template.render(|name| match schema.index_of(name) {
            Ok(i) => Some(Value::from_array(batch.column(i).as_ref(), row)),
            Err(_) => self.params.get(name).cloned(),
        })
    }

    /// Open the burst whose first row is `row` of `batch`.
    fn start(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        key: Value,
        buf: &mut Vec<u8>,
        outlet: &Outlet<'_>,
    ) -> Result<(), EngineError> {
        let report = self.report();
        let meta = self.meta.clone().ok_or_else(|| EngineError::Internal("burst: rows before Begin".into()))?;
        let name = self.file_name(batch, row, &key)?;
        let to = self.plan.to.as_ref().map(|t| self.fill(t, batch, row).trim().to_string());
        let mut burst_meta = (*meta).clone();
        if let Some(t) = &self.plan.title {
            burst_meta.title = Some(self.fill(t, batch, row));
        }
        let stage_err =
            |e: ream_stages::StageError| EngineError::Stage { report: report.clone(), message: e.to_string() };
        let stages =
            (self.stages.iter()).map(|c| c.build(&meta.schema)).collect::<Result<_, _>>().map_err(stage_err)?;
        let partition = Some((self.plan.by.clone(), (!matches!(key, Value::Null)).then(|| key.to_string())));
        outlet.start_part(PartId { partition, number: 1, name: Some(name), to })?;
        let renderer = self.format.renderer_with(&self.render);
        self.open = Some(Open { stages, renderer, key, rows: 0 });
        self.through(Event::Begin(Arc::new(burst_meta)), buf, outlet)
    }

    /// The burst's file name: its template filled, one path segment, not given before.
    fn file_name(&mut self, batch: &RecordBatch, row: usize, key: &Value) -> Result<String, EngineError> {
        let filled = self.fill(&self.plan.filename, batch, row);
        let name = crate::split::hive_escape(filled.trim());
        if name.is_empty() || name == "." || name == ".." {
            return Err(EngineError::Usage(format!("burst.filename gives `{filled}` for `{key}`: not a file name")));
        }
        let hash = Sha256::digest(name.as_bytes());
        let hash = u128::from_le_bytes(hash[..16].try_into().unwrap_or_default());
        if !self.names.insert(hash) {
            return Err(EngineError::Usage(format!(
                "burst.filename gives `{name}` for `{key}` as it did for an earlier `{by}`: use `{{{by}}}` in it",
                by = self.plan.by
            )));
        }
        Ok(name)
    }

    /// One event through the open burst's stages and renderer.
    fn through(&mut self, event: Event, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        // Once per batch: the report's name is borrowed, only copied into an error.
        let Bursts { open, meta, .. } = self;
        let report = meta.as_ref().map_or("", |m| m.report.as_str());
        let Some(open) = open.as_mut() else { return Err(EngineError::Internal("burst: no open burst".into())) };
        let mut current = vec![event];
        for stage in open.stages.iter_mut() {
            let mut next = Vec::with_capacity(current.len());
            for e in current {
                stage
                    .push(e, &mut next)
                    .map_err(|e| EngineError::Stage { report: report.to_string(), message: e.to_string() })?;
            }
            current = next;
        }
        for e in &current {
            open.renderer.push(e, buf).map_err(|e| render_err(report, e))?;
            outlet.send_pieces(open.renderer.as_mut(), buf)?;
        }
        Ok(())
    }

    /// End the open burst: its totals, its renderer's trailer, the part's end.
    fn close(&mut self, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        let Some(rows) = self.open.as_ref().map(|o| o.rows) else { return Ok(()) };
        let end = Event::End { variables: Arc::from(Vec::new()), rows, charts: Arc::from(Vec::new()) };
        self.through(end, buf, outlet)?;
        let report = self.report();
        let Some(mut open) = self.open.take() else { return Ok(()) };
        finish_renderer(open.renderer.as_mut(), buf, outlet, &report)?;
        outlet.end_part(rows)?;
        self.progress.bursts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
