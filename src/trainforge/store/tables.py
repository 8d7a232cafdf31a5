"""The job store's tables (SQLAlchemy Core). Alembic migrations create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# BigInteger autoincrement ids render as INTEGER PRIMARY KEY on SQLite (rowid) via the variant.
_Id = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "training_jobs",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("arn", String(256), nullable=False),
    Column("spec", Text, nullable=False),  # the CreateTrainingJob request as JSON
    Column("status", String(32), nullable=False),
    Column("secondary_status", String(32), nullable=False),
    Column("status_message", Text, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("instance_type", String(64), nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("model_artifacts", Text, nullable=False),
    Column("creation_time", Float, nullable=False),
    Column("last_modified_time", Float, nullable=False),
    Column("training_start_time", Float, nullable=True),
    Column("training_end_time", Float, nullable=True),
    Column("stop_requested", String(32), nullable=True),
    Column("backend", String(32), nullable=True),
    Column("backend_handle", Text, nullable=True),
    Column("agent_token_hash", String(128), nullable=True),
    Column("heartbeat_time", Float, nullable=True),
    Column("created_by", String(64), nullable=True),  # the owner's user name (NULL: made before users existed)
    Column("role_json", Text, nullable=True),  # the role resolved at submit: {"name", "read": [...], "write": [...]}
    Column("attempt", Integer, nullable=False, server_default="1"),  # 1, then 2, 3, ... as RetryStrategy re-runs it
    Index("ix_training_jobs_status", "status"),
    Index("ix_training_jobs_created_by", "created_by"),
    Index("ix_training_jobs_creation_time", "creation_time"),
)

transitions = Table(
    "secondary_status_transitions",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("job_id", _Id, ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=True),
    Column("message", Text, nullable=True),
    Column("log_cursor", BigInteger, nullable=True),  # the job's last log line id when this status began
    Index("ix_transitions_job", "job_id", "id"),
)

log_lines = Table(
    "log_lines",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("job_id", _Id, ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("host", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("stream", String(8), nullable=False),
    Column("message", Text, nullable=False),
    UniqueConstraint("job_id", "attempt", "host", "seq", name="uq_log_lines_job_attempt_host_seq"),
    Index("ix_log_lines_job_id", "job_id", "id"),
)

metric_points = Table(
    "metric_points",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("job_id", _Id, ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("host", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("value", Float, nullable=False),
    Column("timestamp", Float, nullable=False),
    # The sender's key for points posted by a supervisor (a resent batch is stored once); NULL for points
    # extracted from log lines, which are made once per stored line.
    Column("seq", BigInteger, nullable=True),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Index("ix_metric_points_job_name", "job_id", "name", "timestamp"),
    Index("uq_metric_points_job_attempt_host_name_seq", "job_id", "attempt", "host", "name", "seq", unique=True),
)

job_hosts = Table(
    "job_hosts",
    metadata,
    Column("job_id", _Id, ForeignKey("training_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("host", String(64), primary_key=True),
    Column("status", String(32), nullable=False),  # the host's own SecondaryStatus, as its supervisor reported it
    Column("message", Text, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("updated_time", Float, nullable=False),
    # What the host ran on, as its supervisor reported it with Training (JSON: runtime/lineage.py's shape)
    Column("lineage", Text, nullable=True),
)

# Each requirements.txt layer's full resolution (pins with hashes), stored once so every node installs the same
environment_locks = Table(
    "environment_locks",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("resolution", Text, nullable=False),
    Column("python", String(32), nullable=False),
    Column("created_time", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("admin", Integer, nullable=False, default=0),
    Column("disabled", Integer, nullable=False, default=0),
    Column("default_role", String(64), nullable=True),
    Column("created_time", Float, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("token_id", String(32), nullable=False, unique=True),  # the public part shown by `tokens list`
    Column("user_id", _Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(128), nullable=False),  # SHA-256 of the token; the token itself is never stored
    Column("description", String(255), nullable=True),
    Column("created_time", Float, nullable=False),
    Column("expires_time", Float, nullable=True),
    Column("revoked_time", Float, nullable=True),
    Column("last_used_time", Float, nullable=True),
    Index("ix_api_tokens_user", "user_id"),
)

roles = Table(
    "roles",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("read_prefixes", Text, nullable=False),  # JSON list of s3:// prefixes
    Column("write_prefixes", Text, nullable=False),  # JSON list of s3:// prefixes
    Column("description", Text, nullable=True),
    Column("created_time", Float, nullable=False),
)

role_grants = Table(
    "role_grants",
    metadata,
    Column("role_id", _Id, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", _Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("created_time", Float, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("user_name", String(64), nullable=True),
    Column("action", String(64), nullable=False),  # e.g. CreateTrainingJob, StopTrainingJob, CreateUser
    Column("target", String(255), nullable=True),  # the job (or user, token, role) acted on
    Column("source", String(255), nullable=True),  # the client's address
    Column("outcome", String(16), nullable=False),  # "ok" or the HTTP status of a refusal
    Column("detail", Text, nullable=True),
    Index("ix_audit_events_time", "time"),
)

console_nonces = Table(
    "console_nonces",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # "ticket" (a used one-time sign-in link) or "signout"
    Column("expires_time", Float, nullable=False),  # after this the nonce is refused anyway and may be forgotten
    Index("ix_console_nonces_expires", "expires_time"),
)

# -- inference: models, endpoint configs, endpoints, batch transform jobs (migration 0006) ------------------

models = Table(
    "models",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("arn", String(256), nullable=False),
    Column("spec", Text, nullable=False),  # the CreateModel request as JSON
    Column("training_job_name", String(63), nullable=True),  # the job whose model.tar.gz it serves, if any
    Column("created_by", String(64), nullable=True),
    Column("role_json", Text, nullable=True),  # the role resolved at create: {"name", "read": [...], "write": [...]}
    Column("creation_time", Float, nullable=False),
    Index("ix_models_creation_time", "creation_time"),
)

endpoint_configs = Table(
    "endpoint_configs",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("arn", String(256), nullable=False),
    Column("spec", Text, nullable=False),  # the CreateEndpointConfig request as JSON
    Column("created_by", String(64), nullable=True),
    Column("creation_time", Float, nullable=False),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("arn", String(256), nullable=False),
    Column("config_name", String(63), nullable=False),  # the config it serves (or is updating to)
    # What it serves, resolved when created or updated: {"EndpointConfig": {...}, "Models": {name: DescribeModel}}
    Column("spec", Text, nullable=False),
    Column("status", String(32), nullable=False),  # Creating|InService|Updating|SystemUpdating|Deleting|Failed
    Column("failure_reason", Text, nullable=True),
    Column("creation_time", Float, nullable=False),
    Column("last_modified_time", Float, nullable=False),
    Column("created_by", String(64), nullable=True),
    Column("role_json", Text, nullable=True),
    Column("backend", String(32), nullable=True),
    Column("backend_handle", Text, nullable=True),  # the current launch's handle
    Column("agent_token_hash", String(128), nullable=True),  # the current launch's token
    Column("attempt", Integer, nullable=False, server_default="1"),  # the launch generation (relaunch, update)
    Column("log_owner", String(160), nullable=False),  # inference_log_lines.owner of this endpoint's life
    Index("ix_endpoints_status", "status"),
)

endpoint_instances = Table(
    "endpoint_instances",
    metadata,
    Column("endpoint_id", _Id, ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("host", String(64), primary_key=True),
    Column("status", String(32), nullable=False),  # Pending|InService|Failed|Stopped, as its supervisor reported
    Column("address", String(255), nullable=True),  # http://<ip>:<port> of its serving process once InService
    Column("failure_reason", Text, nullable=True),
    Column("heartbeat_time", Float, nullable=True),
    Column("updated_time", Float, nullable=False),
)

transform_jobs = Table(
    "transform_jobs",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("arn", String(256), nullable=False),
    Column("spec", Text, nullable=False),  # the CreateTransformJob request as JSON
    Column("model_spec", Text, nullable=False),  # DescribeModel of its model at submit (the model may be deleted)
    Column("status", String(32), nullable=False),  # InProgress|Completed|Failed|Stopping|Stopped
    Column("failure_reason", Text, nullable=True),
    Column("creation_time", Float, nullable=False),
    Column("last_modified_time", Float, nullable=False),
    Column("transform_start_time", Float, nullable=True),
    Column("transform_end_time", Float, nullable=True),
    Column("stop_requested", String(32), nullable=True),
    Column("created_by", String(64), nullable=True),
    Column("role_json", Text, nullable=True),
    Column("backend", String(32), nullable=True),
    Column("backend_handle", Text, nullable=True),
    Column("agent_token_hash", String(128), nullable=True),
    Column("heartbeat_time", Float, nullable=True),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Index("ix_transform_jobs_status", "status"),
    Index("ix_transform_jobs_creation_time", "creation_time"),
)

transform_instances = Table(
    "transform_instances",
    metadata,
    Column("job_id", _Id, ForeignKey("transform_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("host", String(64), primary_key=True),
    Column("status", String(32), nullable=False),  # InProgress|Completed|Failed|Stopped, as its supervisor reported
    Column("message", Text, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("updated_time", Float, nullable=False),
)  # migration 0007

inference_log_lines = Table(
    "inference_log_lines",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    # "endpoint/<name>/<creation ms>" or "transform/<name>": kept after the endpoint or job record is gone
    Column("owner", String(160), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("host", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("stream", String(8), nullable=False),
    Column("message", Text, nullable=False),
    UniqueConstraint("owner", "attempt", "host", "seq", name="uq_inference_log_lines_owner_attempt_host_seq"),
    Index("ix_inference_log_lines_owner", "owner", "id"),
)

endpoint_metric_points = Table(
    "endpoint_metric_points",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("owner", String(160), nullable=False),  # the endpoint life's log owner
    Column("name", String(64), nullable=False),  # Invocations, Invocation4XXErrors, ModelLatency, ...
    Column("value", Float, nullable=False),
    Column("timestamp", Float, nullable=False),
    Index("ix_endpoint_metric_points_owner", "owner", "name", "timestamp"),
)

usage_intervals = Table(
    "usage_intervals",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    # One launch of instances that outlives its record: "endpoint/<name>/<creation ms>/<attempt>"
    Column("key", String(200), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # endpoint
    Column("name", String(63), nullable=False),
    Column("owner", String(64), nullable=True),  # the resource's created_by (None: the admin, as for old jobs)
    Column("instance_type", String(64), nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=True),  # None while the instances run
    Index("ix_usage_intervals_start_time", "start_time"),
)  # migration 0009
