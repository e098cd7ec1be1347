//! Users' files (`[storage]`): where their bytes live, what each user may
//! keep, and what keeping them costs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::models::DecimalValue;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A folder on this machine (`dir`): zero setup, one instance.
    #[default]
    Local,
    /// An S3-compatible object store (`[storage.s3]`): AWS S3, MinIO, R2…;
    /// what several instances share.
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: Backend,
    /// The local backend's folder.
    pub dir: String,
    pub s3: S3Config,
    /// The address clients reach the gateway at (`https://gw.example.com`):
    /// public files' URLs are given under it, and a request naming such a
    /// URL gets the file inlined. Default: `http://` and `listen`.
    pub public_url: Option<String>,
    /// What every user may keep, unless their group says otherwise: the
    /// largest file, all their files' bytes, and how many.
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: u64,
    /// Per group: any of the quota's fields.
    pub groups: BTreeMap<String, QuotaOverride>,
    /// Largest file a request may reference for inlining (a model's inputs
    /// travel in the request body).
    pub max_inline_bytes: u64,
    /// An upload must end within this; one that has not (its instance
    /// crashed) is removed by the sweeper after it.
    pub upload_ttl_secs: u64,
    /// USD per GB (10^9 bytes) kept for a day, charged each UTC day to the
    /// balance (0: storage is free).
    pub price_per_gb_day: DecimalValue,
}

impl StorageConfig {
    /// The storage price in nano-USD per GB-day (checked at load).
    pub fn nano_per_gb_day(&self) -> Option<i64> {
        self.price_per_gb_day.to_decimal().ok()?.usd_to_nano()
    }
}

/// What one user may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverride {
    pub max_file_bytes: Option<u64>,
    pub max_total_bytes: Option<u64>,
    pub max_files: Option<u64>,
}

/// `[storage.s3]`. Credentials are literals or `env:VAR`; left out, the
/// usual `AWS_*` variables are read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `https://s3.us-east-1.amazonaws.com`, `http://127.0.0.1:9000`…
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Keys are put under this prefix (`tollgate/`), to share a bucket.
    pub prefix: String,
    /// `https://bucket.endpoint/key` addressing instead of
    /// `https://endpoint/bucket/key`.
    pub virtual_hosted_style: bool,
}

const MIB: u64 = 1024 * 1024;

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Local,
            dir: "./data/files".into(),
            s3: S3Config::default(),
            public_url: None,
            max_file_bytes: 512 * MIB,
            max_total_bytes: 5 * 1024 * MIB,
            max_files: 10_000,
            groups: BTreeMap::new(),
            max_inline_bytes: 20 * MIB,
            upload_ttl_secs: 6 * 3600,
            price_per_gb_day: DecimalValue::Int(0),
        }
    }
}

impl StorageConfig {
    /// What a user of `group` may keep.
    pub fn quota_of(&self, group: &str) -> Quota {
        let base = Quota {
            max_file_bytes: self.max_file_bytes,
            max_total_bytes: self.max_total_bytes,
            max_files: self.max_files,
        };
        match self.groups.get(group) {
            Some(o) => Quota {
                max_file_bytes: o.max_file_bytes.unwrap_or(base.max_file_bytes),
                max_total_bytes: o.max_total_bytes.unwrap_or(base.max_total_bytes),
                max_files: o.max_files.unwrap_or(base.max_files),
            },
            None => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_overrides_only_what_it_names() {
        let config: StorageConfig = toml::from_str(
            "max_files = 5\n[groups.vip]\nmax_total_bytes = 100\n[s3]\nbucket = \"b\"\n",
        )
        .unwrap();
        assert_eq!(config.max_files, 5);
        assert_eq!(config.max_file_bytes, 512 * MIB);
        let vip = config.quota_of("vip");
        assert_eq!(
            (vip.max_files, vip.max_total_bytes, vip.max_file_bytes),
            (5, 100, 512 * MIB)
        );
        assert_eq!(config.quota_of("other").max_total_bytes, 5 * 1024 * MIB);
        assert!(toml::from_str::<StorageConfig>("max_filez = 1").is_err());
    }
}
