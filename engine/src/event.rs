//! Events: past-tense facts, the only thing ferrify stores.
//!
//! Every event is wrapped in an [`Envelope`] (trace id, time) and encoded
//! through `ferrify_store::codec`. Streams:
//!
//! | stream                   | events                                             |
//! |--------------------------|----------------------------------------------------|
//! | `app/<app_id>`           | app imported, workflow published, API keys, deletion |
//! | `run/<task_id>`          | one chat turn, completion or workflow run          |
//! | `conversation/<id>`      | rename, delete, variable updates                   |
//! | `file/<file_id>`         | an upload                                          |
//! | `feedback/<message_id>`  | feedback given, changed or revoked on a message    |
//! | `app/<app_id>`           | annotations added, edited, deleted; annotation reply on/off |
//! | `run/<task_id>`          | `AnnotationReplied`: the turn was answered from an annotation |
//! | `suggested/<message_id>` | questions suggested after a message's answer       |
//!
//! **Compatibility rule:** the encoding is positional. Never reorder or
//! renumber variants or fields, never change a field's type; add new variants
//! at the end of [`Event`]. `engine/tests/golden/events.bin` holds one encoded
//! event of every variant and must keep decoding.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::json::Json;

/// What every stored event carries besides its fact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The caller's trace id (`X-Trace-Id`, `trace_id`…), when one was given.
    pub trace_id: Option<String>,
    /// When the engine produced the event, Unix microseconds.
    pub at: i64,
    pub event: Event,
}

impl Envelope {
    pub fn new(at: i64, trace_id: Option<String>, event: Event) -> Self {
        Envelope { trace_id, at, event }
    }

    pub fn encode(&self) -> Result<Vec<u8>, ferrify_store::codec::CodecError> {
        ferrify_store::codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ferrify_store::codec::CodecError> {
        ferrify_store::codec::decode(bytes)
    }
}

/// Token counts and prices of one model call or a whole run. Prices are
/// decimal strings, as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub prompt_unit_price: String,
    pub prompt_price_unit: String,
    pub prompt_price: String,
    pub completion_unit_price: String,
    pub completion_price_unit: String,
    pub completion_price: String,
    pub total_price: String,
    pub currency: String,
    /// Seconds spent in model calls.
    pub latency: f64,
    pub time_to_first_token: Option<f64>,
    pub time_to_generate: Option<f64>,
}

/// The conversation a chat turn creates, when it starts one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewConversation {
    pub name: String,
    pub introduction: String,
}

/// A run was accepted: every id of the run is allocated here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    pub task_id: Uuid,
    pub app_id: Uuid,
    /// App mode at the time of the run (`chat`, `completion`, `workflow`, …).
    pub mode: String,
    pub end_user_id: Uuid,
    /// The raw `user` string of the request.
    pub user: String,
    pub conversation_id: Option<Uuid>,
    pub new_conversation: Option<NewConversation>,
    pub message_id: Option<Uuid>,
    pub workflow_run_id: Option<Uuid>,
    pub workflow_id: Option<Uuid>,
    pub query: String,
    /// Validated form inputs.
    pub inputs: Json,
    /// Request files.
    pub files: Json,
    pub streaming: bool,
    /// Anything else the runner needs to re-execute the run (model settings, options).
    pub options: Json,
}

/// A node execution began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStarted {
    pub node_execution_id: Uuid,
    pub node_id: String,
    pub node_type: String,
    pub title: String,
    pub index: u64,
    pub predecessor_node_id: Option<String>,
    pub inputs: Json,
    pub iteration_id: Option<String>,
    pub loop_id: Option<String>,
    pub extras: Json,
}

/// A node execution ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeFinished {
    pub node_execution_id: Uuid,
    pub node_id: String,
    pub node_type: String,
    /// `succeeded`, `failed`, `exception`, `stopped`, `retry`.
    pub status: String,
    pub inputs: Json,
    pub process_data: Json,
    pub outputs: Json,
    pub error: Option<String>,
    pub elapsed_time: f64,
    pub execution_metadata: Json,
}

/// A workflow run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowFinished {
    /// `succeeded`, `failed`, `partial-succeeded`, `stopped`.
    pub status: String,
    pub outputs: Json,
    pub error: Option<String>,
    pub total_tokens: u64,
    pub total_steps: u64,
    pub exceptions_count: u64,
    pub elapsed_time: f64,
}

/// An iteration or loop container began its rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerStarted {
    /// `iteration` or `loop`.
    pub kind: String,
    pub node_execution_id: Uuid,
    pub node_id: String,
    pub node_type: String,
    pub title: String,
    /// Number of items (iteration) or the round limit (loop).
    pub length: u64,
    pub inputs: Json,
}

/// An iteration or loop container ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerCompleted {
    pub kind: String,
    pub node_execution_id: Uuid,
    pub node_id: String,
    pub inputs: Json,
    pub outputs: Json,
    /// `succeeded`, `failed`, `stopped`.
    pub status: String,
    pub error: Option<String>,
    pub elapsed_time: f64,
    pub total_tokens: u64,
    pub steps: u64,
}

/// A file was uploaded (`POST /files/upload`); its bytes are in blob storage under `key`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileUploaded {
    pub file_id: Uuid,
    pub app_id: Uuid,
    pub end_user_id: Uuid,
    /// The raw `user` of the upload.
    pub user: String,
    /// The client's file name (shortened, never used as a storage name).
    pub name: String,
    pub size: u64,
    /// Lower case, without the dot (may be empty).
    pub extension: String,
    pub mime_type: String,
    /// `image`, `document`, `audio`, `video` or `custom`.
    pub category: String,
    /// The blob key in storage.
    pub key: String,
    /// Which storage kind holds it (`local`, `s3`, `memory`).
    pub storage: String,
}

/// Annotation reply was switched on (or its settings changed) by job `job_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnotationReplyEnabled {
    pub job_id: Uuid,
    pub score_threshold: f64,
    pub embedding_provider_name: String,
    pub embedding_model_name: String,
    /// Every annotation's question embedded by the named provider, when it is
    /// a configured provider that embeds; `None`: questions are matched by
    /// normalised text similarity instead.
    pub embeddings: Option<Vec<(Uuid, Vec<f32>)>>,
}

/// Every fact ferrify records. Append new variants at the end only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    // --- app/<app_id> -------------------------------------------------
    /// An app was imported from a DSL file.
    AppImported {
        app_id: Uuid,
        name: String,
        mode: String,
        description: String,
        icon: String,
        icon_background: String,
        /// The DSL text as imported.
        dsl: String,
    },
    /// A workflow version was published (import publishes the first one).
    WorkflowPublished {
        workflow_id: Uuid,
        graph: Json,
        features: Json,
        environment: Json,
        conversation_variables: Json,
    },
    /// An API key was created; only a hash of the token is kept.
    ApiKeyCreated {
        key_id: Uuid,
        token_hash: String,
        token_hint: String,
    },
    /// An API key was revoked.
    ApiKeyRevoked {
        key_id: Uuid,
    },
    /// The app was deleted.
    AppDeleted,

    // --- run/<task_id> ------------------------------------------------
    RunStarted(Box<RunStarted>),
    /// A model provider was called (the full request, for replay).
    ModelCalled {
        node_id: Option<String>,
        provider: String,
        model: String,
        request: Json,
    },
    /// A piece of the answer text (chat `message`, advanced-chat answer text).
    AnswerChunk {
        text: String,
        from_variable_selector: Option<Vec<String>>,
    },
    /// A model call ended with its full answer.
    ModelAnswered {
        node_id: Option<String>,
        text: String,
        usage: Usage,
    },
    /// Output moderation replaced the answer.
    AnswerReplaced {
        answer: String,
        reason: String,
    },
    /// The message ended (normally or stopped).
    MessageEnded {
        answer: String,
        usage: Usage,
        latency: f64,
        stopped: bool,
    },
    /// The end user asked the run to stop.
    StopRequested {
        user: String,
    },
    /// The run failed; `code`/`status` are the Dify error it surfaces as.
    RunFailed {
        code: String,
        message: String,
        status: u16,
    },
    NodeStarted(Box<NodeStarted>),
    NodeFinished(Box<NodeFinished>),
    /// Workflow output text (`text_chunk`).
    TextChunk {
        text: String,
        from_variable_selector: Option<Vec<String>>,
    },
    WorkflowFinished(Box<WorkflowFinished>),

    // --- conversation/<id> --------------------------------------------
    ConversationRenamed {
        name: String,
    },
    ConversationDeleted,
    ConversationVariableUpdated {
        variable_id: String,
        name: String,
        value_type: String,
        value: Json,
    },

    // --- run/<task_id>, workflow runs ----------------------------------
    /// A node attempt failed and will be retried.
    NodeRetried {
        finished: Box<NodeFinished>,
        retry_index: u64,
    },
    ContainerStarted(Box<ContainerStarted>),
    /// A container round begins.
    ContainerNext {
        kind: String,
        node_execution_id: Uuid,
        node_id: String,
        index: u64,
        /// Loop variables before the round (loops only).
        pre_loop_output: Json,
    },
    ContainerCompleted(Box<ContainerCompleted>),
    /// The server stopped while the run was in flight; recorded when it
    /// starts again. `answer` is the partial answer the run had streamed.
    RunInterrupted {
        answer: String,
        message: String,
    },

    // --- file/<file_id> -----------------------------------------------
    FileUploaded(Box<FileUploaded>),

    // --- feedback/<message_id> ----------------------------------------
    /// An end user rated a message (a new rating, or a change of it).
    FeedbackGiven {
        feedback_id: Uuid,
        message_id: Uuid,
        app_id: Uuid,
        conversation_id: Option<Uuid>,
        end_user_id: Uuid,
        /// `like` or `dislike`.
        rating: String,
        content: Option<String>,
    },
    /// The end user revoked their rating of a message.
    FeedbackRevoked {
        feedback_id: Uuid,
        message_id: Uuid,
        app_id: Uuid,
    },

    // --- app/<app_id>: annotations ---------------------------------------
    /// A canned question→answer pair was added. `embedding`: the question's
    /// vector, when annotation reply is on with an embedding model.
    AnnotationCreated {
        annotation_id: Uuid,
        question: String,
        answer: String,
        embedding: Option<Vec<f32>>,
    },
    /// An annotation's question and answer were replaced.
    AnnotationUpdated {
        annotation_id: Uuid,
        question: String,
        answer: String,
        embedding: Option<Vec<f32>>,
    },
    AnnotationDeleted {
        annotation_id: Uuid,
    },
    AnnotationReplyEnabled(Box<AnnotationReplyEnabled>),
    /// Annotation reply was switched off by job `job_id`.
    AnnotationReplyDisabled {
        job_id: Uuid,
    },

    // --- run/<task_id> ------------------------------------------------
    /// The query matched an annotation (similarity `score`): the turn is
    /// answered with its answer and no model is called.
    AnnotationReplied {
        app_id: Uuid,
        annotation_id: Uuid,
        score: f64,
    },

    // --- run/<task_id> ------------------------------------------------
    /// Input moderation flagged the query or inputs: the preset answer
    /// follows as the whole answer, without a model call.
    InputModerated {
        /// The moderation type (`keywords`, `openai_moderation`).
        kind: String,
        preset_response: String,
    },

    // --- suggested/<message_id> ---------------------------------------
    /// Follow-up questions were generated for a message
    /// (`GET /messages/:id/suggested`): the model call and what was kept of it.
    QuestionsSuggested {
        message_id: Uuid,
        app_id: Uuid,
        provider: String,
        model: String,
        request: Json,
        /// The model's raw answer.
        text: String,
        /// The questions parsed from it (empty when it held no JSON array of strings).
        questions: Vec<String>,
    },

    // --- run/<task_id>, auto-played answers (see `crate::audio`) --------
    /// A piece of the spoken answer (`tts_message`), after `MessageEnded`.
    TtsAudio {
        audio: Vec<u8>,
    },
    /// The spoken answer is complete (`tts_message_end`): the run's last event.
    TtsEnded,
}

impl Event {
    /// Whether appending this event must wait for an fsync (terminal and
    /// administrative facts); text chunks and progress need not.
    ///
    /// A run's start need not either: nothing of a run reaches a client before
    /// an fsync covered it (subscriptions see only fsynced records), and its
    /// end is durable, so waiting for the start's own fsync would only add one
    /// to every streamed request's path before its model is called.
    pub fn is_durable(&self) -> bool {
        !matches!(
            self,
            Event::RunStarted(_)
                | Event::AnswerChunk { .. }
                | Event::TextChunk { .. }
                | Event::NodeStarted(_)
                | Event::NodeFinished(_)
                | Event::ModelCalled { .. }
                | Event::ModelAnswered { .. }
                | Event::NodeRetried { .. }
                | Event::ContainerStarted(_)
                | Event::ContainerNext { .. }
                | Event::ContainerCompleted(_)
                | Event::TtsAudio { .. }
        )
    }
}
