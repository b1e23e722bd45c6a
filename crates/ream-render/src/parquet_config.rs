//! How Parquet is written: the one config of the Parquet renderer, with its defaults.
//! Available in every build, so options parse the same whether or not the build writes
//! Parquet (feature `columnar`).

use serde::Deserialize;

/// How Parquet files are written.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    /// The most rows in a row group (`--parquet-row-group-rows`).
    pub row_group_rows: usize,
    /// The most encoded bytes in a row group, which bounds the writer's memory.
    pub row_group_bytes: usize,
    /// The codec of every column (`--parquet-compression`).
    pub compression: ParquetCompression,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig { row_group_rows: 1 << 20, row_group_bytes: 128 << 20, compression: ParquetCompression::Zstd }
    }
}

/// A Parquet column codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    Zstd,
    Snappy,
    None,
}

impl std::str::FromStr for ParquetCompression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "zstd" => Ok(ParquetCompression::Zstd),
            "snappy" => Ok(ParquetCompression::Snappy),
            "none" | "uncompressed" => Ok(ParquetCompression::None),
            other => Err(format!("unknown Parquet compression `{other}`: use zstd, snappy or none")),
        }
    }
}
