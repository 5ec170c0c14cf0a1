"""Typed, immutable settings for serving: one TOML file, then `AISLE_*` environment overrides, then the CLI's.

Why pydantic models with `frozen=True, extra="forbid"`: a typo in a config file ("max_per_brnad") must be an
error at start-up, not a silently ignored rule, and nothing may change settings while the server runs. The
environment wins over the file so a container can override one value without a file of its own:
`AISLE_BUNDLE=/models/v7`, `AISLE_STATE=redis://cache:6379/0`, `AISLE_API_KEYS=k1,k2`, and nested fields with a
double underscore, `AISLE_RULES__MAX_PER_BRAND=3`; a typo there (`AISLE_RULES__MAX_PER_BRNAD`) is an error too.
The layering is `pydantic-settings`' (its TOML and environment sources, merged in priority order); `Settings`
itself stays a plain model, so `Settings(...)` in code never reads the environment. argv is parsed in `aisle.cli`
only.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "AISLE_"
NESTED = "__"
OTHER_VARIABLES = {
    "AISLE_CACHE": "where models, embeddings and exports are cached",
    "AISLE_SERVE_SETTINGS": "set by `aisle serve` for its worker processes",
    "AISLE_CONSUMER_PARENT": "set by `aisle serve` for its stream consumer processes (its pid)",
    "AISLE_STREAM_TRACE": "a file the stream consumers append one line per round to (benchmarks/events.py --trace)",
}
"""`AISLE_*` variables that are not settings but are still Aisle's (so they are not typos)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Pin(_Frozen):
    """Show `item_id` at `position` (1-based) of every list it is allowed into (a promotion)."""

    item_id: str
    position: int = Field(ge=1)


class RulesConfig(_Frozen):
    """Business rules applied after ranking (see `aisle.rules`)."""

    exclude_seen: Literal["all", "purchased", "none"] = "all"
    only_available: bool = True
    max_per_brand: int | None = Field(default=None, ge=1)
    diversity: float = Field(default=0.0, ge=0.0, le=1.0)
    """Penalty per item already shown from the same leaf category (0 = none, 1 = strong)."""
    boost_items: dict[str, float] = Field(default_factory=dict)
    boost_brands: dict[str, float] = Field(default_factory=dict)
    boost_categories: dict[str, float] = Field(default_factory=dict)
    pins: tuple[Pin, ...] = ()
    new_item_slot: int | None = Field(default=3, ge=1)
    """Cold start: the best candidate added since the bundle (no events yet) is shown at this position at the
    latest, so new products get exposure; None turns it off."""


class InferenceConfig(_Frozen):
    """How full-catalog recommenders run per request (`aisle.optimize`, `aisle.index`). The defaults are the
    fastest configuration that kept NDCG@10 within 2% of fp32 PyTorch exact scoring on Amazon Beauty, and
    recall@10 >= 0.95 on a 1,000,000-item catalog (benchmarks/optimize.py; RESULTS.md "Deployment performance")."""

    enabled: bool = True
    """False: the models' own PyTorch / NumPy scoring, as trained."""
    backend: Literal["torch", "torch-int8", "onnx", "onnx-int8"] = "onnx-int8"
    """The sequential model's history encoder."""
    item_table: Literal["exact", "exact-fp16", "exact-int8"] = "exact-int8"
    """Scoring below `ann_min_items`: every item, from an fp32 / fp16 / int8 table."""
    ann: Literal["hnsw", "hnsw-sq8", "ivf", "ivf-sq8", "ivf-pq"] = "ivf"
    ann_min_items: int = Field(default=100_000, ge=1)
    """Catalogs of at least this many items are served from the `ann` index (and live sessions are scored online
    whatever `online_max_items` says); smaller ones by exact scoring."""
    hnsw_m: int = Field(default=32, ge=4)
    ef_search: int = Field(default=64, ge=1)
    nprobe: int = Field(default=128, ge=1)
    refine: int = Field(default=0, ge=0)
    query_encoder: Literal["torch", "onnx", "onnx-int8"] = "onnx"
    """The MiniLM query encoder of search."""
    cache_dir: Path | None = None
    """Where ONNX exports and ANN indexes are kept between starts (default `$AISLE_CACHE/optimize`, else
    `~/.cache/aisle/optimize`)."""


class WorkerConfig(_Frozen):
    """`aisle worker`: how often it refreshes and refits the served bundle, and the gate a candidate must pass
    (`aisle.worker`). The registry is the settings' `bundle`, the store their `store`, the lease and the
    notification their `state` (Redis) when it is one."""

    refresh_seconds: float = Field(default=60.0, gt=0)
    """Fold the events stored since the last watermark (and catalog changes) into the served bundle this often."""
    refit_hours: float = Field(default=24.0, gt=0)
    """Refit the whole pipeline (deep model included) at least this often."""
    refit_events: int = Field(default=500_000, ge=0)
    """...or as soon as this many events were folded in since the last refit (0: by time only)."""
    tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    """A refit candidate is refused when its NDCG@10 on the hold-out is below the serving bundle's by more than
    this fraction of it (0.05: at most 5% worse)."""
    holdout_events: int = Field(default=20_000, ge=1)
    """The gate's temporal hold-out: the newest events (by time), unless `holdout_days` is set."""
    holdout_days: float | None = Field(default=None, gt=0)
    """The gate's hold-out as the last days of events instead of a number of events."""
    gate_users: int = Field(default=2_000, ge=1)
    """At most this many hold-out shoppers are scored (a seeded sample), to bound the gate's time."""
    latency_budget_ms: float = Field(default=50.0, gt=0)
    """Health check: the p99 of a sample of recommendation requests on the candidate must stay within this."""
    lease_ttl_seconds: float = Field(default=30.0, gt=0)
    """The training lease expires this long after its holder stops renewing it (a worker killed with -9): the next
    worker waiting takes over within about this time."""
    pipeline: Path | None = None
    """A TOML/JSON file with a [pipeline] table and model tables (what `aisle train --config` takes) for refits;
    default: the default pipeline."""
    dense: bool = True
    """Refits build the search index with dense (MiniLM) vectors."""
    compact_hours: float = Field(default=24.0, ge=0.0)
    """Run `aisle compact` (erased shoppers' bytes leave the store's files and Redis' AOF) this often; 0 = never
    (run it yourself). PostgreSQL's VACUUM FULL locks each table while it rewrites it: schedule accordingly."""
    impression_ranker_min: int = Field(default=5_000, ge=1)
    """With a pipeline whose `ranker = "impressions"`: a refit trains the ranker learned from impressions
    (`aisle.implearn`) once the store holds at least this many served lists before the gate's hold-out; until then
    the combiner ranks. The candidate then passes the same gate, and its decision carries the off-policy estimate
    (SNIPS and DR) of its click rate next to the serving ranker's on the held-out lists."""
    seed: int = 0


class ArmConfig(_Frozen):
    """One arm of an A/B experiment: what its shoppers are served by. Without `bundle` and `rules` it is the
    server's own configuration (a control arm)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: float = Field(default=1.0, gt=0)
    """Share of shoppers, relative to the other arms' weights."""
    bundle: Path | None = None
    """A serving bundle folder (another version of the model) loaded beside the server's own; None: the server's."""
    rules: dict[str, Any] = Field(default_factory=dict)
    """Business-rule settings that differ in this arm (`[rules]` fields: `max_per_brand`, `diversity`, ...)."""


class ExperimentConfig(_Frozen):
    """An A/B experiment: shoppers are split between `arms` by a salted hash of their user id (their session id
    when anonymous), the same arm on every request, worker and restart (`aisle.experiments.arms.assign`)."""

    name: str = Field(min_length=1, max_length=64)
    salt: str = ""
    """Changing it reshuffles who gets which arm (a new experiment on the same shoppers); empty: the name."""
    arms: tuple[ArmConfig, ...] = Field(min_length=2)
    control: str | None = None
    """The arm the others are compared with (default: the first)."""

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment arms need distinct names, got {names}")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control arm {self.control!r} is not one of the arms {names}")
        for arm in self.arms:
            try:
                RulesConfig.model_validate(arm.rules)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"arm {arm.name!r} rules: {problems}") from None
        return self

    @property
    def control_arm(self) -> str:
        return self.control or self.arms[0].name


class ExploreConfig(_Frozen):
    """Exploration of new and cold items (`aisle.explore`): on a share of recommendation lists, chosen slots show a
    cold item picked by a bandit, so the store learns whether new products sell before the next refit has data on
    them. On, it takes over from the `new_item_slot` rule. Off by default (README "Exploring new and cold items":
    it needs `aisle worker` to learn; benchmarks/RESULTS.md "Exploration" for what it earned in the simulator)."""

    enabled: bool = False
    share: float = Field(default=1.0, gt=0.0, le=1.0)
    """The share of recommendation lists that explore (a coin per request)."""
    slots: tuple[int, ...] = (3,)
    """1-based positions an exploring list gives to cold items (a pinned position moves the slot to the next free
    one)."""
    policy: Literal["thompson", "linucb"] = "linucb"
    """thompson: Beta posteriors of each cold item's click (or purchase) rate; linucb: a linear upper confidence
    bound over item and shopper features (category, brand and price fit with the shopper's stored history, price,
    the item's own observed rate)."""
    reward: Literal["click", "purchase"] = "click"
    cold_events: int = Field(default=1, ge=1)
    """An item with fewer positive events than this in the bundle is cold (1: the new items, which have none); an
    item stays in exploration, once it entered, until it graduates."""
    graduate_impressions: float = Field(default=300.0, gt=0)
    """A cold item leaves exploration after this many (examination-weighted) impressions: enough to know it."""
    pool: int = Field(default=200, ge=1)
    """At most this many cold items are candidates (the newest first): the per-request work is bounded by it."""
    draws: int = Field(default=128, ge=8, le=4096)
    """Thompson sampling: posterior draws made when the state loads; a list explores with one of them, picked
    uniformly, so each slot's propensity is exact (the share of draws that put the item there)."""
    prior_clicks: float = Field(default=1.0, gt=0)
    prior_misses: float = Field(default=20.0, gt=0)
    """Beta prior of a cold item's rate: 1 in 21 by default, about a typical click rate per examined item."""
    alpha: float = Field(default=1.0, ge=0)
    """LinUCB: the width of the confidence bonus."""
    attribution_seconds: float = Field(default=1_800.0, gt=0)
    """A click or purchase counts for an impression when it arrives within this long of it."""
    seed: int = 0

    @field_validator("slots")
    @classmethod
    def _slots(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(s < 1 for s in v) or len(set(v)) != len(v):
            raise ValueError("explore slots must be distinct 1-based positions, e.g. [3] or [3, 7]")
        return tuple(sorted(v))


class Settings(_Frozen):
    bundle: Path = Path("aisle-data") / "bundle"
    store: str | Path | None = None
    """The store that accepted events are appended to and erased users are deleted from (optional): a DuckDB file
    (a Path) or a `postgresql://` URL (kept as text)."""
    state: str = "memory"
    """Where live session state lives: `memory` (one process) or a `redis://` URL (any number of workers)."""
    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Keys for write routes (POST /events, PUT /items, DELETE /users); empty = open (local use only)."""
    admin_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Keys for /admin routes; empty = the write keys."""
    max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    max_batch: int = Field(default=1_000, ge=1)
    max_k: int = Field(default=100, ge=1)
    history_length: int = Field(default=50, ge=1)
    """Events per user kept in live state."""
    consume: bool = True
    """With Redis state and a store: `aisle serve` runs the stream consumers (stream -> store, events and
    impressions) in one process beside its workers (an app made by `create_app` alone: in threads), so a plain
    deployment needs no `aisle consume` process; False leaves that to `aisle consume`."""
    consumers: int = Field(default=1, ge=1, le=64)
    """With `consume`: how many consumer processes `aisle serve` runs; they share the event stream (one consumer
    group), so where one cannot keep up (its lag grows on `/metrics`) more write in parallel: PostgreSQL takes their
    transactions at once; a DuckDB file takes one writer at a time."""
    consumer_nice: int = Field(default=5, ge=0, le=19)
    """How many levels nicer than the workers that consumer process runs (and its DuckDB with one thread):
    background writing yields the CPU to the requests (a store write every 0.5-2 s took both cores at once for
    tens of ms, the load benchmark's tail). 5 leaves it a third of a worker's weight when the CPU is saturated, so
    it still makes progress under a sustained write load; higher starves it more; 0 makes it the workers' equal."""
    events_store_s: float = Field(default=0.5, ge=0, le=60)
    """Redis state: a consumer of the event stream that found less than a full round (1,000 entries) starts its next
    round this long after the last one started (at once when that round took longer), so the store gets fewer,
    larger transactions (a DuckDB one costs tens of ms of CPU whatever its size); about what an event waits in the
    stream before it is in the store. The live state has it at once."""
    stream_claim_idle_s: float = Field(default=30.0, gt=0)
    """A stream entry taken by a consumer and not acknowledged for this long (the consumer died) is claimed and
    written by another."""
    online_max_items: int = Field(default=20_000, ge=0)
    """Full-catalog models score live sessions on each request only up to this catalog size; above it they
    serve the per-user lists precomputed in the bundle and the session reacts through item-to-item sources."""
    registry_keep: int = Field(default=5, ge=2)
    """When `bundle` is a registry (`aisle.registry`): how many versions to keep (the current one and the rollback
    target are always kept)."""
    watch_seconds: float = Field(default=0.0, ge=0.0)
    """When `bundle` is a bundle folder: poll it for a new manifest this often (0 = only on POST /admin/reload)."""
    follow_seconds: float = Field(default=2.0, ge=0.0)
    """When `bundle` is a registry: poll its `current` pointer this often, the fallback to the Redis notices (every
    worker also listens on `aisle.registry.BUNDLE_CHANNEL` when the state is Redis); 0 = notices only."""
    search_cache: int = Field(default=2_048, ge=0)
    """Unpersonalised search answers kept per worker (serialized), most recently used first out last."""
    gc_freeze: bool = True
    """After each bundle load: one full garbage collection, then `gc.freeze()` (the bundle's objects are never
    walked again by the collector; see `aisle.serve.services.settle_heap`)."""
    quick_routes: bool = True
    """Answer certainly valid `GET /users/{id}/recommendations` without FastAPI's per-request validation
    (`aisle.serve.quick`; anything else still takes the FastAPI route). False: every request through FastAPI."""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    rules: RulesConfig = RulesConfig()
    inference: InferenceConfig = InferenceConfig()
    worker: WorkerConfig = WorkerConfig()
    explore: ExploreConfig = ExploreConfig()
    impressions: bool = True
    """Log every served list (request id, items, positions, scores, propensities, arm) to the store's impression
    log, written in the background (`aisle.serve.impressions`); needs `store`."""
    impressions_flush_s: float = Field(default=1.0, gt=0, le=60)
    """How often the buffered impressions of a worker are written (memory state) or sent to the Redis stream: what
    a `kill -9` of a worker can lose."""
    impressions_store_s: float = Field(default=2.0, ge=0, le=600)
    """Redis state: a consumer of the impression stream writes to the store at most this often (fewer, larger store
    transactions; each DuckDB one opens the file, ~10-30 ms of a worker's CPU)."""
    experiment: ExperimentConfig | None = None

    def arm_settings(self, arm: ArmConfig) -> Settings:
        """These settings as `arm` serves them: its rule settings over the server's `[rules]`."""
        if not arm.rules:
            return self
        rules = RulesConfig.model_validate({**self.rules.model_dump(), **arm.rules})
        return self.model_copy(update={"rules": rules})

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: Any) -> Any:
        return tuple(k.strip() for k in v.split(",") if k.strip()) if isinstance(v, str) else v

    @field_validator("store")
    @classmethod
    def _store_path_or_url(cls, v: Path | str | None) -> Path | str | None:
        if v is None or isinstance(v, Path):
            return v
        return v if v.startswith(("postgresql://", "postgres://")) else Path(v)

    @field_validator("state")
    @classmethod
    def _check_state(cls, v: str) -> str:
        if v != "memory" and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("state must be 'memory' or a redis:// URL")
        return v

    @property
    def write_keys(self) -> tuple[str, ...]:
        return self.api_keys

    @property
    def admin_or_write_keys(self) -> tuple[str, ...]:
        return self.admin_keys or self.api_keys


class ConfigError(ValueError):
    """A settings file or variable is invalid; the message names it."""


def accepted_variables() -> list[str]:
    """Every `AISLE_*` name the settings accept: one per field, and one per field of a nested table."""
    names = []
    for name, info in Settings.model_fields.items():
        names.append(f"{ENV_PREFIX}{name.upper()}")
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names += [f"{ENV_PREFIX}{name.upper()}{NESTED}{sub.upper()}" for sub in nested.model_fields]
    return names


def _check_names(env: Mapping[str, str]) -> None:
    """An `AISLE_*` variable that is no setting is a typo: name it and list what is accepted (pydantic-settings
    itself ignores unknown environment variables)."""
    accepted = set(accepted_variables()) | set(OTHER_VARIABLES)
    unknown = sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in accepted)
    if unknown:
        where = ", ".join(f"{k} ({k[len(ENV_PREFIX):].lower().replace(NESTED, '.')})" for k in unknown)
        raise ConfigError(f"unknown environment variable{'s' if len(unknown) > 1 else ''} {where}; accepted: "
                          f"{', '.join(accepted_variables())}, and {', '.join(OTHER_VARIABLES)}")


class AisleEnvironment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (`load_settings(env=...)`), not os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def _layered(path: Path | None, environ: Mapping[str, str]) -> type[BaseSettings]:
    """Settings read from the sources in priority order: keyword overrides, then the environment, then the file."""

    class Layered(Settings, BaseSettings):
        model_config: ClassVar[SettingsConfigDict] = SettingsConfigDict(  # type: ignore[misc]
            frozen=True, extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED, case_sensitive=False)

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                       **_unused: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
            file = (TomlConfigSettingsSource(settings_cls, toml_file=path),) if path is not None else ()
            return init_settings, AisleEnvironment(settings_cls, environ), *file

    return Layered


def load_settings(path: Path | None = None, *, env: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Settings from `path` (TOML), then `AISLE_*` variables, then keyword overrides (the CLI's options)."""
    environ = os.environ if env is None else env
    if path is not None:
        try:  # pydantic-settings skips a missing file silently, and its TOML errors do not name the file
            tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    _check_names(environ)
    where = f"{path} / environment" if path else "environment / options"
    try:
        layered = _layered(path, environ)(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings ({where}): {problems}") from None
    except SettingsError as exc:  # a table or list variable (AISLE_RULES__BOOST_ITEMS) must be JSON
        raise ConfigError(f"invalid settings ({where}): {exc} (a table or list variable is JSON, e.g. "
                          "AISLE_RULES__BOOST_BRANDS='{\"Acme\": 2}')") from None
    return Settings.model_validate(layered.model_dump())


__all__ = ["ArmConfig", "ConfigError", "ExperimentConfig", "ExploreConfig", "InferenceConfig", "Pin", "RulesConfig",
           "Settings", "WorkerConfig", "accepted_variables", "load_settings"]
