//! Where files' bytes live: a folder on this machine, or an S3-compatible
//! object store (through `object_store`). Both write a file as it arrives
//! and read any range of it as a stream; neither holds a whole file in
//! memory.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::config::{resolve_secret, StorageBackend, StorageConfig};

/// Parts of a multipart upload to S3 (the last may be smaller): a write
/// holds at most [`S3_PARTS_IN_FLIGHT`] of them.
const S3_PART_BYTES: usize = 8 * 1024 * 1024;
const S3_PARTS_IN_FLIGHT: usize = 2;
/// The local backend writes through a buffer this large.
const LOCAL_BUFFER_BYTES: usize = 1024 * 1024;
/// The local backend reads in pieces this large.
const LOCAL_READ_BYTES: usize = 256 * 1024;

/// Why the storage failed (said in the logs; clients get a 503).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(String);

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError(format!("local storage: {e}"))
    }
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        StorageError(format!("object store: {e}"))
    }
}

pub enum Storage {
    /// Files under `dir`, fanned out by their id's first two characters;
    /// uploads are written under `dir/.partial` and moved in place once
    /// whole.
    Local { dir: PathBuf },
    S3 {
        store: Arc<AmazonS3>,
        prefix: String,
    },
}

/// A file being written.
pub enum Writer {
    Local {
        file: BufWriter<tokio::fs::File>,
        partial: PathBuf,
        done: PathBuf,
    },
    S3(Box<WriteMultipart>),
}

impl Storage {
    pub fn open(config: &StorageConfig) -> Result<Storage, StorageError> {
        match config.backend {
            StorageBackend::Local => {
                // Folders are made on the first upload: a gateway that
                // stores no file leaves none.
                Ok(Storage::Local {
                    dir: PathBuf::from(&config.dir),
                })
            }
            StorageBackend::S3 => {
                let s3 = &config.s3;
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_virtual_hosted_style_request(s3.virtual_hosted_style);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(resolve_secret(key));
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(resolve_secret(secret));
                }
                Ok(Storage::S3 {
                    store: Arc::new(builder.build()?),
                    prefix: s3.prefix.trim_end_matches('/').to_string(),
                })
            }
        }
    }

    fn local_path(dir: &std::path::Path, id: &str) -> PathBuf {
        let fan = id.get(..2).unwrap_or("__");
        dir.join(fan).join(id)
    }

    fn object_path(prefix: &str, id: &str) -> ObjectPath {
        match prefix.is_empty() {
            true => ObjectPath::from(format!("files/{id}")),
            false => ObjectPath::from(format!("{prefix}/files/{id}")),
        }
    }

    /// Starts writing the file `id` (its id is checked: URL-safe only).
    pub async fn writer(&self, id: &str) -> Result<Writer, StorageError> {
        match self {
            Storage::Local { dir } => {
                let partial = dir.join(".partial").join(id);
                let done = Self::local_path(dir, id);
                tokio::fs::create_dir_all(dir.join(".partial")).await?;
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&partial)
                    .await?;
                Ok(Writer::Local {
                    file: BufWriter::with_capacity(LOCAL_BUFFER_BYTES, file),
                    partial,
                    done,
                })
            }
            Storage::S3 { store, prefix } => {
                let upload = store.put_multipart(&Self::object_path(prefix, id)).await?;
                Ok(Writer::S3(Box::new(WriteMultipart::new_with_chunk_size(
                    upload,
                    S3_PART_BYTES,
                ))))
            }
        }
    }

    /// The bytes of `id` in `range` (all of them when `None`), as a stream.
    pub async fn read(
        &self,
        id: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        match self {
            Storage::Local { dir } => {
                let mut file = tokio::fs::File::open(Self::local_path(dir, id)).await?;
                let reader = match range {
                    Some(range) => {
                        file.seek(SeekFrom::Start(range.start)).await?;
                        tokio::io::AsyncReadExt::take(file, range.end - range.start)
                    }
                    None => tokio::io::AsyncReadExt::take(file, u64::MAX),
                };
                let stream = tokio_util::io::ReaderStream::with_capacity(reader, LOCAL_READ_BYTES);
                Ok(stream.map(|r| r.map_err(StorageError::from)).boxed())
            }
            Storage::S3 { store, prefix } => {
                let options = GetOptions {
                    range: range.map(GetRange::Bounded),
                    ..GetOptions::default()
                };
                let got = store
                    .get_opts(&Self::object_path(prefix, id), options)
                    .await?;
                Ok(got
                    .into_stream()
                    .map(|r| r.map_err(StorageError::from))
                    .boxed())
            }
        }
    }

    /// Removes `id`'s bytes (and a partial upload's); none is fine.
    pub async fn delete(&self, id: &str) -> Result<(), StorageError> {
        match self {
            Storage::Local { dir } => {
                for path in [dir.join(".partial").join(id), Self::local_path(dir, id)] {
                    match tokio::fs::remove_file(&path).await {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                        _ => {}
                    }
                }
                Ok(())
            }
            Storage::S3 { store, prefix } => {
                match store.delete(&Self::object_path(prefix, id)).await {
                    Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

impl Writer {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        match self {
            Writer::Local { file, .. } => Ok(file.write_all(chunk).await?),
            Writer::S3(upload) => {
                upload.wait_for_capacity(S3_PARTS_IN_FLIGHT).await?;
                upload.write(chunk);
                Ok(())
            }
        }
    }

    /// Makes the file whole and durable where it is read from.
    pub async fn finish(self) -> Result<(), StorageError> {
        match self {
            Writer::Local {
                mut file,
                partial,
                done,
            } => {
                file.flush().await?;
                file.get_ref().sync_all().await?;
                if let Some(parent) = done.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::rename(&partial, &done).await?;
                Ok(())
            }
            Writer::S3(upload) => {
                upload.finish().await?;
                Ok(())
            }
        }
    }

    /// Gives the file up, leaving nothing behind (what cannot be removed
    /// now is, by the sweeper, through the file's row).
    pub async fn abort(self) {
        let result = match self {
            Writer::Local { file, partial, .. } => {
                drop(file);
                tokio::fs::remove_file(&partial)
                    .await
                    .map_err(StorageError::from)
            }
            Writer::S3(upload) => upload.abort().await.map_err(StorageError::from),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "an abandoned upload was not removed; the sweeper will");
        }
    }
}
