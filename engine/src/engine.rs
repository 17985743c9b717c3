//! [`Engine`]: the store opened with every projection, plus what runs share
//! (providers, the app cache, stop flags, conversation locks). Cheap to clone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrify_store::blob::local::LocalBlobs;
use ferrify_store::blob::memory::MemoryBlobs;
use ferrify_store::blob::s3::{S3Blobs, S3Options};
use ferrify_store::blob::BlobStore;
use ferrify_store::{Options, Store};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::app_cache::AppCache;
use crate::apps::LoadedApp;
use crate::error::EngineError;
use crate::files::FileSettings;
use crate::limits::{RunLimits, RunSlots};
use crate::model::{AnnotationSettingRow, ApiKeyRow, ConversationRow};
use crate::projection;
use crate::provider::audio::AudioProvider;
use crate::provider::Providers;
use crate::workflow::{Workflow, WorkflowSettings};

/// Where and how the engine keeps its log, and which models it can call.
#[derive(Clone)]
pub struct EngineConfig {
    /// Data directory of the sled log; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Longest time a non-durable event waits for its fsync.
    pub flush_interval: Duration,
    pub providers: Providers,
    /// Settings of workflow runs (limits, network policy, code execution).
    pub workflow: WorkflowSettings,
    /// Upload limits and file policies.
    pub files: FileSettings,
    /// Where uploaded bytes live.
    pub storage: StorageConfig,
    /// Caps on runs in flight and on a run's wall time.
    pub limits: RunLimits,
    /// The `[audio]` provider (text-to-speech, speech-to-text), when configured.
    pub audio: Option<AudioProvider>,
}

/// Where uploaded files' bytes are kept.
#[derive(Clone, Debug, Default)]
pub enum StorageConfig {
    /// A directory: the given one, else `files/` in the data directory
    /// (in memory when the engine itself is).
    #[default]
    Local,
    /// This directory.
    LocalDir(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Options),
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: Some(PathBuf::from("./ferrify-data")),
            flush_interval: Duration::from_millis(10),
            providers: Providers::builtin_only(),
            workflow: WorkflowSettings::default(),
            files: FileSettings::default(),
            storage: StorageConfig::Local,
            limits: RunLimits::default(),
            audio: None,
        }
    }
}

/// A run that can be stopped: who started it and its flag.
pub(crate) struct Stoppable {
    pub app_id: Uuid,
    pub end_user_id: Uuid,
    pub flag: Arc<AtomicBool>,
    /// Wakes runs that wait on something else (a node, a model chunk).
    pub notify: Arc<tokio::sync::Notify>,
    /// Workflow runs are stopped by anyone with the app's key; message runs only by their user.
    pub any_user: bool,
}

pub(crate) struct Inner {
    pub store: Store,
    pub providers: Providers,
    pub apps: RwLock<HashMap<Uuid, Arc<LoadedApp>>>,
    /// Live API keys by token hash.
    pub api_keys: AppCache<String, ApiKeyRow>,
    /// Annotation reply settings by app (`None`: reply is off).
    pub annotation_settings: AppCache<Uuid, Option<AnnotationSettingRow>>,
    pub running: Mutex<HashMap<Uuid, Stoppable>>,
    pub conversation_locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Set once [`Engine::shutdown`] began: turns still waiting for their
    /// conversation do not start.
    pub closing: AtomicBool,
    pub workflow_settings: Arc<WorkflowSettings>,
    /// Compiled workflow versions, by app and version id.
    pub workflows: RwLock<HashMap<(Uuid, Uuid), Arc<Workflow>>>,
    pub files: FileSettings,
    /// Signs and checks the file links handed out.
    pub signer: crate::files::signed::UrlSigner,
    /// Uploaded files' bytes.
    pub blobs: Arc<dyn BlobStore>,
    /// The scratch engine re-executions run on (made on first use, renewed
    /// when it grows; see [`crate::reexec`]). Held for a whole re-execution.
    pub reexec_scratch: tokio::sync::Mutex<Option<Engine>>,
    pub limits: RunLimits,
    /// Runs in flight, for admission.
    pub slots: Arc<RunSlots>,
    /// Annotation reply jobs (enable/disable) and their states.
    pub annotation_jobs: Mutex<crate::annotation::jobs::Jobs>,
    pub audio: Option<AudioProvider>,
    /// The tasks spawned for runs and jobs.
    pub tasks: crate::tasks::Tasks,
    /// Blocking runs holding their events back (see `crate::runner::held`).
    pub held_runs: Arc<crate::runner::held::HeldRuns>,
}

/// The engine: its store and shared services.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    /// Opens the log (catching read models up with it).
    pub fn open(config: &EngineConfig) -> Result<Engine, ferrify_store::Error> {
        let options = Options { flush_interval: config.flush_interval, ..Options::default() };
        let store = match &config.data_dir {
            Some(dir) => Store::open_sled(dir, projection::all(), options)?,
            None => Store::open_memory(projection::all(), options)?,
        };
        Self::open_on(config, store)
    }

    /// The engine over a log opened already (with [`crate::projection::all`] as its
    /// projectors, and its own options: `config.flush_interval` is the log's,
    /// unused here); `config.data_dir` still places the uploaded files and the
    /// file links' key.
    pub fn open_on(config: &EngineConfig, store: Store) -> Result<Engine, ferrify_store::Error> {
        let blob_error = |e: ferrify_store::blob::BlobError| ferrify_store::Error::Io(e.to_string());
        let blobs: Arc<dyn BlobStore> = match (&config.storage, &config.data_dir) {
            (StorageConfig::S3(o), _) => Arc::new(S3Blobs::open(o).map_err(blob_error)?),
            (StorageConfig::LocalDir(dir), _) => Arc::new(LocalBlobs::open(dir).map_err(blob_error)?),
            (StorageConfig::Local, Some(dir)) => Arc::new(LocalBlobs::open(&dir.join("files")).map_err(blob_error)?),
            (StorageConfig::Local, None) => Arc::new(MemoryBlobs::new()),
        };
        let signer = crate::files::signed::UrlSigner::open(
            config.files.secret_key.as_deref(),
            config.data_dir.as_deref(),
            config.files.access_timeout,
        )
        .map_err(|e| ferrify_store::Error::Io(format!("the file links' secret key: {e}")))?;
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                providers: config.providers.clone(),
                apps: RwLock::new(HashMap::new()),
                api_keys: AppCache::new(crate::apps::MAX_CACHED_KEYS),
                annotation_settings: AppCache::new(crate::annotation::MAX_CACHED_SETTINGS),
                running: Mutex::new(HashMap::new()),
                conversation_locks: Mutex::new(HashMap::new()),
                closing: AtomicBool::new(false),
                workflow_settings: Arc::new(config.workflow.clone()),
                workflows: RwLock::new(HashMap::new()),
                files: config.files.clone(),
                signer,
                blobs,
                reexec_scratch: tokio::sync::Mutex::new(None),
                limits: config.limits.clone(),
                slots: Arc::new(RunSlots::default()),
                annotation_jobs: Mutex::new(Default::default()),
                audio: config.audio.clone(),
                tasks: Default::default(),
                held_runs: Default::default(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    /// Unix microseconds, the time of new events.
    pub fn now(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
    }

    /// The run limits in force.
    pub fn limits(&self) -> &RunLimits {
        &self.inner.limits
    }

    /// Runs in flight right now.
    pub fn runs_in_flight(&self) -> usize {
        self.inner.slots.in_flight()
    }

    /// Takes a slot for a new run asked for with API key `key`, or refuses
    /// it with [`crate::EngineError::TooManyRuns`].
    pub(crate) fn admit(&self, key: Option<Uuid>) -> crate::Result<crate::limits::RunSlot> {
        self.inner.slots.admit(&self.inner.limits, key)
    }

    /// Flushes the log and stops its writer. Runs still going then fail to
    /// record (and are closed as interrupted at the next start); to let them
    /// end first, use [`Engine::shutdown`].
    pub fn close(&self) -> Result<(), ferrify_store::Error> {
        self.inner.store.close()
    }

    /// Waits up to `grace` for the engine's runs and jobs to end and let go
    /// of it, then [closes](Engine::close) the log. Once it returns with no
    /// other handle left, the data directory can be opened again at once.
    pub async fn shutdown(&self, grace: std::time::Duration) -> Result<(), ferrify_store::Error> {
        self.inner.closing.store(true, std::sync::atomic::Ordering::Release);
        if tokio::time::timeout(grace, self.inner.tasks.idle()).await.is_err() {
            tracing::warn!(tasks = self.inner.tasks.live(), "closing the log with engine tasks still running");
        }
        let store = self.inner.store.clone();
        // Closing joins the writer thread: off the async workers.
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(|_| ferrify_store::Error::Io("the log's closing task failed".into()))?
    }

    /// Spawns an engine task (counted for [`Engine::shutdown`]).
    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.tasks.spawn(fut)
    }

    /// Serialises turns of one conversation: the guard is held for a whole run.
    pub(crate) async fn lock_conversation(&self, id: Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.inner.conversation_locks.lock().entry(id).or_default().clone();
        lock.lock_owned().await
    }

    /// Runs `turn` holding the lock of conversation `id` of this end user of
    /// this app, with its row as it is once the lock is held (see
    /// [`Engine::conversation_of`]). While another turn of it runs, this one
    /// takes its place in line at once (first come, first served) and waits
    /// in an engine task, so that a client leaving meanwhile does not drop it;
    /// it does not start once the engine is shutting down.
    pub(crate) async fn in_conversation<T, F, Fut>(
        &self,
        id: Uuid,
        app_id: Uuid,
        end_user: Uuid,
        turn: F,
    ) -> crate::error::Result<T>
    where
        F: FnOnce(Engine, ConversationRow, tokio::sync::OwnedMutexGuard<()>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = crate::error::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        use futures_util::FutureExt;
        let lock = self.inner.conversation_locks.lock().entry(id).or_default().clone();
        let mut waiting = Box::pin(lock.lock_owned());
        // Polled once here: free, or queued behind the turns that asked before.
        if let Some(guard) = (&mut waiting).now_or_never() {
            let (row, guard) = self.held_conversation(id, app_id, end_user, guard)?;
            return turn(self.clone(), row, guard).await;
        }
        // Refused at once if it is not this end user's (leaving the line).
        self.conversation_of(id, app_id, end_user)?;
        let engine = self.clone();
        let task = self.spawn(async move {
            let guard = waiting.await;
            if engine.inner.closing.load(std::sync::atomic::Ordering::Acquire) {
                drop(guard);
                engine.release_conversation(id);
                return Err(EngineError::Store(ferrify_store::Error::Closed));
            }
            // Again: it may have been deleted while this turn waited.
            let (row, guard) = engine.held_conversation(id, app_id, end_user, guard)?;
            turn(engine, row, guard).await
        });
        match task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!("a turn waiting for conversation {id} failed: {e}");
                Err(EngineError::Store(ferrify_store::Error::Io(format!("the turn failed: {e}"))))
            }
        }
    }

    /// The conversation's row with its lock held; when the turn may not go
    /// on in it, the lock is let go (and forgotten once nobody wants it).
    fn held_conversation(
        &self,
        id: Uuid,
        app_id: Uuid,
        end_user: Uuid,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> crate::error::Result<(ConversationRow, tokio::sync::OwnedMutexGuard<()>)> {
        match self.conversation_of(id, app_id, end_user) {
            Ok(row) => Ok((row, guard)),
            Err(e) => {
                drop(guard);
                self.release_conversation(id);
                Err(e)
            }
        }
    }

    /// A conversation this end user of this app may talk in: it exists, is
    /// theirs and has not ended.
    pub(crate) fn conversation_of(
        &self,
        id: Uuid,
        app_id: Uuid,
        end_user: Uuid,
    ) -> crate::error::Result<ConversationRow> {
        let row = self.store().get_json::<ConversationRow>(projection::trees::CONVERSATIONS, id.as_bytes())?;
        let row = row
            .filter(|r| r.app_id == app_id && r.end_user_id == end_user && !r.deleted)
            .ok_or_else(|| EngineError::NotFound("Conversation Not Exists.".into()))?;
        if row.status != "normal" {
            return Err(EngineError::ConversationCompleted);
        }
        Ok(row)
    }

    /// Forgets a conversation's lock once nobody holds or waits for it.
    pub(crate) fn release_conversation(&self, id: Uuid) {
        let mut locks = self.inner.conversation_locks.lock();
        if locks.get(&id).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&id);
        }
    }
}
