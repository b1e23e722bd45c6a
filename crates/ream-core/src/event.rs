//! Events carry a report's structure from the stages to the renderers.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::chart::ChartData;
use crate::params::ParamValue;
use crate::spec::Align;
use crate::template::{Format, Locale, Template};
use crate::value::Value;

/// What a renderer needs to know before the first row.
#[derive(Debug, Clone)]
pub struct ReportMeta {
    pub report: String,
    pub title: Option<String>,
    pub parameters: Vec<(String, ParamValue)>,
    /// The batches' schema (every source field).
    pub schema: SchemaRef,
    /// The detail band, in output order.
    pub columns: Vec<OutputColumn>,
    /// Whether detail rows are output (`false`: a summary report).
    pub detail: bool,
    /// Number conventions for banded outputs.
    pub locale: Locale,
    pub groups: Vec<GroupMeta>,
    /// Variable names, in the order of the values in footers and `End`.
    pub variables: Vec<String>,
    /// What each variable aggregates, in the same order (renderers that place a
    /// subtotal under its column use it).
    pub variable_specs: Vec<VariableSpec>,
    pub summary: Option<Template>,
    pub no_data: Option<Template>,
    pub page_header: Option<Template>,
    pub page_footer: Option<Template>,
    /// Page setup of paged outputs.
    pub page: crate::page::PageSetup,
    /// The paging strategy the source uses, and why.
    pub strategy: String,
}

/// One variable: its aggregate, the field it reads and its reset scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableSpec {
    /// The variable's name in the spec, for messages.
    pub name: String,
    pub aggregate: crate::spec::Aggregate,
    /// Index of the field in the batches; `None` counts rows (`count: "*"`).
    pub field: Option<usize>,
    /// Reset after the footer of this group level; `None` never resets (report scope).
    pub reset_level: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct OutputColumn {
    pub field: String,
    pub label: String,
    /// Index of the field in the batches.
    pub index: usize,
    pub format: Format,
    pub align: Option<Align>,
    /// Paged outputs: the column's width, and whether its text wraps.
    pub width: crate::page::ColumnWidth,
    pub wrap: bool,
    /// XLSX band rows: the variables (indexes into the report's) the spec puts under this
    /// column (`columns[].totals`); empty: the renderer's default.
    pub totals: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct GroupMeta {
    pub name: String,
    pub field: String,
    /// Index of the group field in the batches.
    pub index: usize,
    pub header: Option<Template>,
    pub footer: Option<Template>,
    pub page_break: bool,
}

impl ReportMeta {
    /// The fields of a summary record: the group fields, then the variables.
    pub fn summary_fields(&self) -> Vec<&str> {
        self.groups.iter().map(|g| g.field.as_str()).chain(self.variables.iter().map(String::as_str)).collect()
    }

    /// A group header's text: its template filled from the open groups' `keys` (this
    /// group's last) and the group's `first` row; `None` without a template (a group band
    /// appears only where the spec defines one).
    pub fn group_header_text(&self, level: usize, keys: &[Value], first: &RecordBatch) -> Option<String> {
        let h = self.groups[level].header.as_ref()?;
        Some(h.render(|n| self.lookup_in_row(n, None, keys, Some(first))))
    }

    /// A group footer's text with the variables at its end; `None` without a template.
    pub fn group_footer_text(&self, level: usize, variables: &[Value], keys: &[Value]) -> Option<String> {
        let f = self.groups[level].footer.as_ref()?;
        Some(f.render(|n| self.lookup(n, Some(variables), keys)))
    }

    /// Look up a name for a template: parameters, then variables, then group keys.
    pub fn lookup(&self, name: &str, variables: Option<&[Value]>, keys: &[Value]) -> Option<Value> {
        self.lookup_in_row(name, variables, keys, None)
    }

    /// As [`ReportMeta::lookup`], and then the fields of `row` (a group's first row).
    pub fn lookup_in_row(
        &self,
        name: &str,
        variables: Option<&[Value]>,
        keys: &[Value],
        row: Option<&RecordBatch>,
    ) -> Option<Value> {
        if let Some(v) = self.lookup_named(name, variables, keys) {
            return Some(v);
        }
        let row = row.filter(|r| r.num_rows() > 0)?;
        let i = self.schema.index_of(name).ok()?;
        Some(Value::from_array(row.column(i).as_ref(), 0))
    }

    fn lookup_named(&self, name: &str, variables: Option<&[Value]>, keys: &[Value]) -> Option<Value> {
        if let Some(vars) = variables {
            if let Some(i) = self.variables.iter().position(|v| v == name) {
                return vars.get(i).cloned();
            }
        }
        if let Some(i) = self.groups.iter().position(|g| g.field == name) {
            if let Some(v) = keys.get(i) {
                return Some(v.clone());
            }
        }
        self.parameters.iter().find(|(n, _)| n == name).map(|(_, v)| match v {
            ParamValue::One(v) => v.clone(),
            ParamValue::List(vs) => Value::Str(vs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ").into()),
        })
    }
}

/// The stream between stages and renderers.
#[derive(Debug, Clone)]
pub enum Event {
    Begin(Arc<ReportMeta>),
    /// A group at `level` (0 = outermost) starts; `key` is its field's value and `first`
    /// its first row (one row), so a header can show any field of the group.
    GroupHeader {
        level: usize,
        key: Value,
        first: RecordBatch,
    },
    /// Detail rows, all inside the current innermost group.
    Rows(RecordBatch),
    /// A group ends; `variables` are every variable's value at that point.
    GroupFooter {
        level: usize,
        key: Value,
        variables: Arc<[Value]>,
    },
    /// The report ends; final variable values, the row count, and the charts (filled by
    /// the chart stage).
    End {
        variables: Arc<[Value]>,
        rows: u64,
        charts: Arc<[ChartData]>,
    },
}
