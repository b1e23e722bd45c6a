//! Semantic checks of a spec. [`check_spec`] needs only the spec; [`check_fields`] checks
//! every field reference against the fields the source produces, and runs statically when
//! `source.columns` declares them, else once the source has resolved its schema (still
//! before any row is read).

use std::collections::{HashMap, HashSet};

use crate::error::SpecError;
use crate::params::{bind_given, json_to_given};
use crate::spec::Spec;
use crate::sql::{placeholders, Dialect};

/// The most a chart may ask for: histogram bins, top-N categories, raw points kept,
/// series, and cells. A drawing cannot show more, and an unbounded value (`bins: 2^62`)
/// made the chart stage loop for ever.
pub const MAX_BINS: usize = 10_000;
pub const MAX_TOP: usize = 10_000;
pub const MAX_POINTS: usize = 1_000_000;
pub const MAX_SERIES: usize = 1_000;
pub const MAX_BUCKETS: usize = 10_000_000;
use crate::parsed::{BandTemplate, Parsed};
use crate::template::Template;

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Whether `s` can be a report's (or a chart's) id: letters, digits, `_` and `-` (it
/// names files, URLs and anchors).
pub fn is_report_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Names a template may use, by band.
pub enum Band {
    Title,
    PageHeaderFooter,
    GroupHeader(usize),
    GroupFooter(usize),
    Summary,
    NoData,
}

/// The names visible to a band's template.
pub fn scope(spec: &Spec, band: &Band) -> HashSet<String> {
    let mut names: HashSet<String> = spec.parameters.keys().cloned().collect();
    let groups_upto = |n: usize| spec.groups.iter().take(n + 1).map(|g| g.by.clone());
    match band {
        Band::Title | Band::NoData => {}
        Band::PageHeaderFooter => {
            names.extend(["page".to_string(), "pages".to_string()]);
            if spec.page.restart_at.is_some() {
                names.insert("group_pages".to_string());
            }
        }
        Band::GroupHeader(l) => names.extend(groups_upto(*l)),
        Band::GroupFooter(l) => {
            names.extend(groups_upto(*l));
            names.extend(spec.variables.keys().cloned());
        }
        Band::Summary => names.extend(spec.variables.keys().cloned()),
    }
    names
}

/// Every problem that can be seen from the spec alone.
pub fn check_spec(spec: &Spec) -> Vec<SpecError> {
    parse_spec(spec).err().unwrap_or_default()
}

/// The spec's parsed parts, or every problem that can be seen from the spec alone.
pub fn parse_spec(spec: &Spec) -> Result<Parsed, Vec<SpecError>> {
    let mut errs = Vec::new();
    let parsed = Parsed::parse(spec, &mut errs);
    let mut err = |key: String, msg: String| errs.push(SpecError::new(key, msg));

    if !is_report_id(&spec.report) {
        err("report".into(), format!("`{}` is not a valid report id: use letters, digits, `_` and `-`", spec.report));
    }

    // Source shape.
    let src = &spec.source;
    match (&src.table, &src.sql) {
        (None, None) => err("source".into(), "needs `table` or `sql`".into()),
        (Some(_), Some(_)) => err("source.sql".into(), "`table` and `sql` are exclusive: use one".into()),
        (None, Some(_)) => {
            if !src.joins.is_empty() {
                err("source.joins".into(), "`joins` go with `table`; put them in `sql` instead".into());
            }
            if !src.columns.is_empty() {
                err("source.columns".into(), "`columns` go with `table`; name the columns in `sql` instead".into());
            }
        }
        (Some(t), None) if t.trim().is_empty() => err("source.table".into(), "is empty".into()),
        _ => {}
    }
    if src.order == Some(crate::spec::RowOrder::Any) {
        let needs_order = [
            (!spec.groups.is_empty()).then_some("groups (they need the rows ordered by their fields)"),
            spec.burst.is_some().then_some("`burst` (it needs the rows ordered by its field)"),
            spec.variables
                .values()
                .flat_map(|v| v.aggregates())
                .any(|(a, _)| matches!(a, crate::spec::Aggregate::First | crate::spec::Aggregate::Last))
                .then_some("a `first` or `last` variable (it needs the rows in key order)"),
        ];
        if let Some(why) = needs_order.into_iter().flatten().next() {
            err("source.order".into(), format!("`any` gives the rows in no order, and the report has {why}"));
        }
    }
    if src.batch_size == Some(0) {
        err("source.batch_size".into(), "must be at least 1".into());
    }
    for name in src.columns.keys() {
        if !is_ident(name) {
            err(
                format!("source.columns.{name}"),
                format!("`{name}` is not a valid field name: use letters, digits and `_`"),
            );
        }
    }
    for (name, c) in &src.columns {
        if let Some(t) = c.declared_type() {
            if let Err(e) = crate::types::parse_type_name(t) {
                err(format!("source.columns.{name}.type"), e);
            }
        }
    }

    // Parameters: names, defaults, and the placeholders used in SQL.
    for (name, p) in &spec.parameters {
        let key = format!("parameters.{name}");
        if !is_ident(name) {
            err(key.clone(), format!("`{name}` is not a valid parameter name: use letters, digits and `_`"));
        } else if name == crate::actor::PREFIX {
            err(key.clone(), "`actor` is reserved: `:actor.<claim>` binds the caller's claims".into());
        }
        if let Some(d) = &p.default {
            if let Err(e) = bind_given(p, &json_to_given(d)) {
                err(format!("{key}.default"), e);
            }
        }
        if p.required && p.default.is_some() {
            err(format!("{key}.required"), "a required parameter cannot have a default".into());
        }
    }
    for (key, sql) in [("source.where", &src.filter), ("source.sql", &src.sql)] {
        if let Some(sql) = sql {
            // The run rescans with the driver's own dialect; the spec's URL names it here.
            let dialect = src.url.as_deref().and_then(Dialect::from_url).unwrap_or(Dialect::Sqlite);
            for name in placeholders(sql, dialect) {
                if !spec.parameters.contains_key(&name) && crate::actor::claim_name(&name).is_none() {
                    let hint = crate::suggest::hint(&name, spec.parameters.keys().map(String::as_str));
                    err(key.into(), format!("`:{name}` is not a declared parameter{hint}"));
                }
            }
        }
    }

    for (name, value) in &src.session {
        let key = format!("source.session.{name}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            err(key.clone(), format!("`{name}` is not a setting name: use letters, digits, `_` and `.`"));
        }
        let Ok(t) = crate::template::Template::parse(value) else { continue };
        for slot in t.names() {
            if !spec.parameters.contains_key(slot) && crate::actor::claim_name(slot).is_none() {
                err(key.clone(), format!("`{{{slot}}}` is neither a parameter nor `{{actor.<claim>}}`"));
            }
        }
    }
    if spec.access.as_ref().is_some_and(|a| a.roles.is_empty()) {
        err(
            "access.roles".into(),
            "an empty list lets only admins run the report: name roles, or remove `access`".into(),
        );
    }

    // Groups, variables, columns.
    let mut group_names = HashSet::new();
    for (i, g) in spec.groups.iter().enumerate() {
        if !group_names.insert(g.name().to_string()) {
            err(format!("groups[{i}].name"), format!("group name `{}` is used twice", g.name()));
        }
    }
    for (name, v) in &spec.variables {
        let key = format!("variables.{name}");
        if !is_ident(name) {
            err(key.clone(), format!("`{name}` is not a valid variable name"));
        }
        if spec.parameters.contains_key(name) {
            err(key.clone(), format!("`{name}` is also a parameter name"));
        }
        match v.aggregates().len() {
            1 => {}
            0 => err(
                key.clone(),
                "needs one of sum, count, count_distinct, avg, min, max, first, last, stddev, variance".into(),
            ),
            _ => err(key.clone(), "has more than one aggregate: use one per variable".into()),
        }
        if let Some(r) = &v.reset {
            if r != "report" && !group_names.contains(r.as_str()) {
                let known: Vec<_> = spec.groups.iter().map(|g| g.name()).collect();
                let hint = crate::suggest::hint(r, known.iter().copied().chain(["report"]));
                err(
                    format!("{key}.reset"),
                    format!("`{r}` is neither `report` nor a group (groups: {}){hint}", listed(&known)),
                );
            }
        }
    }
    let mut seen_cols = HashSet::new();
    for (i, c) in spec.columns.iter().enumerate() {
        if !seen_cols.insert(c.field.as_str()) {
            err(format!("columns[{i}].field"), format!("`{}` is shown twice", c.field));
        }
        check_column_totals(spec, i, &mut err);
    }

    check_charts(spec, &mut err);
    check_declared_types(spec, &parsed, &mut err);
    check_restart(spec, &parsed, &mut err);

    // Templates: the names each band may use (their syntax was parsed above).
    for BandTemplate { key, template, band } in parsed.band_templates() {
        // A group header may use any field (of the group's first row): checked by
        // check_fields, once the fields are known.
        if matches!(band, Band::GroupHeader(_)) {
            continue;
        }
        let names = scope(spec, &band);
        for n in template.names() {
            if !names.contains(n) {
                let mut known: Vec<_> = names.iter().cloned().collect();
                known.sort();
                let hint = crate::suggest::hint(n, known.iter().map(String::as_str));
                let known = listed(&known);
                err(key.clone(), format!("`{{{n}}}` is not available here (available: {known}){hint}"));
            }
        }
    }

    if !src.columns.is_empty() {
        let fields: Vec<String> = src.columns.keys().cloned().collect();
        errs.extend(check_fields(spec, &fields));
    }
    match errs.is_empty() {
        true => Ok(parsed),
        false => Err(errs),
    }
}

/// Chart shapes: what can be seen without the source's types.
fn check_charts(spec: &Spec, err: &mut impl FnMut(String, String)) {
    use crate::spec::{ChartAggregate, ChartKind};
    let mut ids = HashSet::new();
    for (i, c) in spec.charts.iter().enumerate() {
        let key = format!("charts[{i}]");
        if !is_report_id(&c.id) {
            err(format!("{key}.id"), format!("`{}` is not a valid chart id: use letters, digits, `_` and `-`", c.id));
        } else if !ids.insert(c.id.as_str()) {
            err(format!("{key}.id"), format!("chart id `{}` is used twice", c.id));
        }
        let x = &c.x;
        let ways = [x.bucket.is_some(), x.bins.is_some() || x.bin_width.is_some(), x.top.is_some()];
        if ways.iter().filter(|w| **w).count() > 1 {
            err(format!("{key}.x"), "give at most one of `bucket`, `bins`/`bin_width` and `top`".into());
        }
        if x.bins.is_some() && x.bin_width.is_some() {
            err(format!("{key}.x.bins"), "`bins` and `bin_width` are exclusive: use one".into());
        }
        let mut within = |name: &str, v: Option<usize>, lo: usize, hi: usize| match v {
            Some(n) if n < lo || n > hi => err(format!("{key}.{name}"), format!("must be from {lo} to {hi}, not {n}")),
            _ => {}
        };
        // Upper bounds: a chart cannot draw more, and each costs memory and time per row.
        within("x.bins", x.bins, 1, MAX_BINS);
        within("x.top", x.top, 1, MAX_TOP);
        within("max_points", c.max_points, 8, MAX_POINTS);
        within("max_series", c.max_series, 1, MAX_SERIES);
        within("max_buckets", c.max_buckets, 1, MAX_BUCKETS);
        if let Some(w) = x.bin_width {
            if !(w.is_finite() && w > 0.0) {
                err(format!("{key}.x.bin_width"), format!("must be a positive number, not {w}"));
            }
        }
        let ys = c.y.aggregates();
        if ys.len() > 1 {
            err(format!("{key}.y"), "has more than one of sum, count, avg, min, max, field: use one".into());
        }
        let (agg, _) = c.y.aggregate();
        let bucketed = ways.iter().any(|w| *w);
        if agg == ChartAggregate::Value {
            if bucketed {
                err(
                    format!("{key}.y.field"),
                    "raw points need an unbucketed x; with `bucket`, `bins` or `top`, aggregate y (sum, count, avg, min, max)"
                        .into(),
                );
            }
            if !matches!(c.kind, ChartKind::Line | ChartKind::Area | ChartKind::Scatter) {
                err(
                    format!("{key}.y.field"),
                    format!("a {} chart aggregates: use sum, count, avg, min or max", c.kind.name()),
                );
            }
        }
        match c.kind {
            ChartKind::Histogram if x.bucket.is_some() || x.top.is_some() => {
                err(format!("{key}.x"), "a histogram bins a number: use `bins` or `bin_width`".into())
            }
            ChartKind::Pie if c.series.is_some() => {
                err(format!("{key}.series"), "a pie has one series: drop `series` or use a bar chart".into())
            }
            _ => {}
        }
        if c.stacked && !matches!(c.kind, ChartKind::Bar | ChartKind::Area) {
            err(format!("{key}.stacked"), format!("only bar and area charts stack, not {}", c.kind.name()));
        }
    }
}

/// Names for a message: `a, b, c`, or `none`.
fn listed<S: AsRef<str>>(names: &[S]) -> String {
    match names.is_empty() {
        true => "none".to_string(),
        false => names.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", "),
    }
}

/// `page.restart_at` names a group, and a page band counts one thing: `{pages}` of the
/// document or `{group_pages}` of the group, not both (each is one number drawn late).
fn check_restart(spec: &Spec, parsed: &Parsed, err: &mut impl FnMut(String, String)) {
    if let Some(r) = spec.page.restart_at.as_deref() {
        if !spec.groups.iter().any(|g| g.name() == r) {
            let known: Vec<_> = spec.groups.iter().map(|g| g.name()).collect();
            let hint = crate::suggest::hint(r, known.iter().copied());
            err("page.restart_at".into(), format!("`{r}` is not a group (groups: {}){hint}", listed(&known)));
        }
    }
    for (key, t) in [("page_header", parsed.page_header()), ("page_footer", parsed.page_footer())] {
        let names: Vec<&str> = t.into_iter().flat_map(|t| t.names()).collect();
        if names.contains(&"pages") && names.contains(&"group_pages") {
            err(key.into(), "use `{pages}` or `{group_pages}`, not both: each is drawn once it is known".into());
        }
    }
}

/// What the types `source.columns` declares show before any database is asked: a
/// variable that sums, averages or spreads a field declared as text, a date or a flag, and
/// a column format that does not suit its declared type.
fn check_declared_types(spec: &Spec, parsed: &Parsed, err: &mut impl FnMut(String, String)) {
    let declared = |name: &str| {
        let ty = spec.source.columns.get(name)?.declared_type()?;
        let dt = crate::types::parse_type_name(ty).ok()?;
        Some(arrow_schema::Field::new(name, dt, true))
    };
    for (name, v) in &spec.variables {
        for (agg, field) in v.aggregates() {
            match declared(field) {
                Some(f) if agg.needs_number() && !crate::types::is_numeric(&f) => {
                    err(format!("variables.{name}.{}", agg.name()), crate::types::not_numeric(agg.name(), &f, true))
                }
                _ => {}
            }
        }
    }
    for (i, c) in spec.columns.iter().enumerate() {
        if let Some(Err(e)) = declared(&c.field).map(|f| parsed.column_format(i).fits(f.data_type())) {
            err(format!("columns[{i}].format"), format!("`{}`: {e}", c.field));
        }
    }
}

/// Every reference to a field that the source does not produce.
pub fn check_fields(spec: &Spec, fields: &[String]) -> Vec<SpecError> {
    let known: HashSet<&str> = fields.iter().map(String::as_str).collect();
    let list = || fields.join(", ");
    let mut errs = Vec::new();
    let mut check = |key: String, field: &str| {
        if !known.contains(field) {
            let hint = crate::suggest::hint(field, fields.iter().map(String::as_str));
            errs.push(SpecError::new(key, format!("unknown field `{field}` (the source has: {}){hint}", list())));
        }
    };
    for (i, k) in spec.source.key.iter().enumerate() {
        check(format!("source.key[{i}]"), k);
    }
    for (i, g) in spec.groups.iter().enumerate() {
        check(format!("groups[{i}].by"), &g.by);
    }
    for (name, v) in &spec.variables {
        for (agg, field) in v.aggregates() {
            // `count: "*"` counts rows.
            if !(field == "*" && agg == crate::spec::Aggregate::Count) {
                check(format!("variables.{name}.{}", agg.name()), field);
            }
        }
    }
    for (i, c) in spec.columns.iter().enumerate() {
        check(format!("columns[{i}].field"), &c.field);
    }
    for (i, c) in spec.charts.iter().enumerate() {
        check(format!("charts[{i}].x.field"), &c.x.field);
        for (agg, field) in c.y.aggregates() {
            if !(field == "*" && agg == crate::spec::ChartAggregate::Count) {
                check(format!("charts[{i}].y.{}", agg.name()), field);
            }
        }
        if let Some(s) = &c.series {
            check(format!("charts[{i}].series"), s);
        }
    }
    // A burst's field, and its templates: parameters, and any field (from its first row).
    if let Some(b) = &spec.burst {
        check("burst.by".into(), &b.by);
        for (key, text) in [("filename", Some(&b.filename)), ("to", b.to.as_ref()), ("title", b.title.as_ref())] {
            let Some(Ok(t)) = text.map(|t| Template::parse(t)) else { continue };
            for n in t.names() {
                if !known.contains(n) && !spec.parameters.contains_key(n) {
                    let hint = crate::suggest::hint(n, fields.iter().chain(spec.parameters.keys()).map(String::as_str));
                    errs.push(SpecError::new(
                        format!("burst.{key}"),
                        format!("`{{{n}}}` is neither a field nor a parameter (the source has: {}){hint}", list()),
                    ));
                }
            }
        }
    }
    // Group headers: parameters, and any field (taken from the group's first row).
    for (i, g) in spec.groups.iter().enumerate() {
        let Some(Ok(t)) = g.header.as_deref().map(Template::parse) else { continue };
        for n in t.names() {
            if !known.contains(n) && !spec.parameters.contains_key(n) {
                let hint = crate::suggest::hint(n, fields.iter().chain(spec.parameters.keys()).map(String::as_str));
                errs.push(SpecError::new(
                    format!("groups[{i}].header"),
                    format!("`{{{n}}}` is neither a field nor a parameter (the source has: {}){hint}", list()),
                ));
            }
        }
    }
    errs
}

/// `columns[i].totals`: declared variables, each of this column's field, one per scope.
fn check_column_totals(spec: &Spec, i: usize, err: &mut impl FnMut(String, String)) {
    let c = &spec.columns[i];
    let mut scopes = HashMap::new();
    for (j, name) in c.totals.iter().enumerate() {
        let key = format!("columns[{i}].totals[{j}]");
        let Some(v) = spec.variables.get(name) else {
            let hint = crate::suggest::hint(name, spec.variables.keys().map(String::as_str));
            err(key, format!("`{name}` is not a declared variable{hint}"));
            continue;
        };
        match v.aggregates().first() {
            Some((agg, field)) if *field != c.field => err(
                key,
                format!(
                    "`{name}` is the {} of `{field}`: only a variable of `{}` goes under this column",
                    agg.name(),
                    c.field
                ),
            ),
            _ => {
                let scope = v.reset.clone().unwrap_or_else(|| "report".into());
                if let Some(other) = scopes.insert(scope.clone(), name) {
                    err(key, format!("`{other}` and `{name}` both reset with `{scope}`: one cell holds one of them"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load::{load_str, SpecFormat};

    fn errors(yaml: &str) -> Vec<String> {
        match load_str(yaml, SpecFormat::Yaml) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_columns_totals_are_its_own_fields_variables_one_per_scope() {
        let spec = "report: r\nsource: {table: t}\ngroups:\n  - by: region\nvariables:\n  sub: {sum: amount, reset: region}\n  \
                    avg_sub: {avg: amount, reset: region}\n  n: {count: id}\n  grand: {sum: amount}\ncolumns:\n  - field: id\n  \
                    - {field: amount, totals: [avg_sub, grand]}\n";
        assert_eq!(errors(spec), Vec::<String>::new());
        let bad = spec.replace("[avg_sub, grand]", "[avg_sub, sub, n, grnd]");
        let e = errors(&bad);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("`columns[1].totals[1]`: `avg_sub` and `sub` both reset with `region`"), "{e:?}");
        assert!(e[1].contains("`columns[1].totals[2]`: `n` is the count of `id`"), "{e:?}");
        assert!(
            e[2].contains("`columns[1].totals[3]`: `grnd` is not a declared variable: did you mean `grand`?"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_fields_are_named_with_their_place() {
        let e = errors("report: r\nsource:\n  table: t\n  columns: {id: t.id}\ngroups:\n  - by: region\ncolumns:\n  - field: totl\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("6:5: `groups[0].by`: unknown field `region`"), "{e:?}");
        assert!(e[1].contains("`columns[0].field`: unknown field `totl`"), "{e:?}");
    }

    #[test]
    fn undeclared_placeholders_and_bad_resets_are_errors() {
        let e =
            errors("report: r\nsource:\n  table: t\n  where: \"x > :min\"\nvariables:\n  v: {sum: x, reset: region}\n");
        assert!(e.iter().any(|e| e.contains("`:min` is not a declared parameter")), "{e:?}");
        assert!(e.iter().any(|e| e.contains("`region` is neither `report` nor a group")), "{e:?}");
    }

    #[test]
    fn templates_may_only_use_names_in_scope() {
        let e = errors("report: r\nsource: {table: t}\ngroups:\n  - by: a\n    footer: \"{nope}\"\nvariables:\n  total: {sum: x}\nsummary: \"{total:currency}\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("`groups[0].footer`: `{nope}` is not available here"), "{e:?}");
        // A header may use any field of the group's first row, but not a variable.
        let e = errors("report: r\nsource: {table: t, columns: {a: t.a, name: t.name, x: t.x}}\ngroups:\n  - by: a\n    header: \"{name} {total}\"\nvariables:\n  total: {sum: x}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("`groups[0].header`: `{total}` is neither a field nor a parameter"), "{e:?}");
    }

    #[test]
    fn a_variable_needs_exactly_one_aggregate() {
        let e = errors("report: r\nsource: {table: t}\nvariables:\n  a: {reset: report}\n  b: {sum: x, avg: x}\n");
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn actor_is_reserved_and_session_templates_name_parameters_or_claims() {
        let e = errors("report: r\nsource: {table: t}\nparameters:\n  actor: {type: string}\n");
        assert!(e.iter().any(|m| m.contains("`actor` is reserved")), "{e:?}");
        let ok = "report: r\nsource:\n  table: t\n  where: \"t = :actor.tenant\"\n  session: {app.tenant: \"{actor.tenant}\", app.region: \"{region}\"}\nparameters:\n  region: {type: string}\n";
        assert_eq!(errors(ok), Vec::<String>::new());
        let e = errors("report: r\nsource:\n  table: t\n  session: {\"app tenant\": \"{nobody}\"}\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter().any(|m| m.contains("not a setting name")) && e.iter().any(|m| m.contains("`{nobody}`")),
            "{e:?}"
        );
        let e = errors("report: r\nsource: {table: t}\naccess: {roles: []}\n");
        assert!(e.iter().any(|m| m.contains("access.roles")), "{e:?}");
    }
}
