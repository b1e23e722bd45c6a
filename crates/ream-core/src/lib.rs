//! ream-core: the report spec and its validation, parameters, values, the events that flow
//! from stages to renderers, and the cancel token every run holds.
//!
//! ```
//! use ream_core::load::{load_str, SpecFormat};
//! use ream_core::params::{bind, ParamValue};
//! use ream_core::value::Value;
//!
//! let spec = load_str(
//!     "report: big_orders\nsource:\n  table: orders\n  where: \"total >= :min\"\n\
//!      parameters:\n  min: { type: int, default: 100 }\n",
//!     SpecFormat::Yaml,
//! ).unwrap().spec().clone();
//! let params = bind(&spec.parameters, &[("min".into(), "250".into())]).unwrap();
//! assert_eq!(params["min"], ParamValue::One(Value::Int(250)));
//! ```

pub mod actor;
pub mod cancel;
pub mod chart;
pub mod error;
pub mod event;
pub mod load;
pub mod page;
pub mod params;
pub mod parsed;
pub mod redact;
pub mod spec;
pub mod sql;
pub mod starter;
pub mod suggest;
pub mod template;
pub mod types;
pub mod units;
pub mod validate;
pub mod value;

pub use actor::Actor;
pub use cancel::CancelToken;
pub use chart::ChartData;
pub use error::{ParamError, ParamErrors, SpecError, SpecErrors};
pub use event::{Event, GroupMeta, OutputColumn, ReportMeta, VariableSpec};
pub use redact::redact;
pub use spec::Spec;
pub use value::Value;
