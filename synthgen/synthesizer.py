"""The public entry point: ``Synthesizer(epsilon=1).fit(df).sample(n)``."""

from __future__ import annotations

import io
import os
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthgen._version import __version__
from synthgen.errors import ArtifactError, BudgetError, SynthgenWarning
from synthgen.io import check_table, read_warnings
from synthgen.models.conditional_sampling import SamplingPlan, generate_rows
from synthgen.models.conditions import ConditionsSpec, RebalanceSpec, facts_of
from synthgen.models.conditions import check as check_conditions
from synthgen.models.networks import Generator
from synthgen.models.sampling import DeviceDecoder, default_chunk, generate_slots
from synthgen.models.trainer import (
    ConditionSampler,
    GANTrainer,
    TrainingConfig,
    TrainingProgress,
    default_epochs,
    env_overrides,
    fresh_seed,
    load_state,
    noise_rng,
    save_state,
)
from synthgen.privacy import (
    BudgetPlan,
    PrivacyLedger,
    calibrate_sgd_noise,
    default_delta,
    epsilon_of,
)
from synthgen.privacy.accountant import check_accountant
from synthgen.privacy.budget import (
    check_delta,
    check_epsilon,
    check_plan,
    domain_share,
    marginal_multipliers,
    marginal_share,
    size_probe,
)
from synthgen.privacy.domains import ColumnDomain, discovers, estimate_domains
from synthgen.privacy.marginals import Marginal, MarginalRelease, measure_marginals
from synthgen.privacy.release import Recording, Releaser
from synthgen.schema import ColumnKind, TableSchema, infer_schema
from synthgen.threads import torch_threads, training_threads
from synthgen.timing import StageClock
from synthgen.transform import TableEncoder

ARTIFACT_FORMAT = 1


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


class Synthesizer:
    """A differentially private conditional GAN for one table.

    Every read of the table during :meth:`fit` is a mechanism in :attr:`ledger`; the reported
    epsilon is composed from the ledger and never exceeds ``epsilon``. :meth:`sample` and
    :meth:`save` never touch the training table.
    """

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float | None = None,
        *,
        schema: TableSchema | None = None,
        epochs: float | None = None,
        batch_size: int | None = None,
        device: str = "auto",
        seed: int | None = None,
        accountant: str = "prv",
        preprocessing_share: float | None = None,
        marginal_share: float | None = None,
        config: TrainingConfig | None = None,
        threads: int | None = None,
        progress: bool | None = None,
    ) -> None:
        self.epsilon = float(epsilon)
        check_epsilon(self.epsilon, check_accountant(accountant))  # before any row is read
        if delta is not None:
            check_delta(delta)
        # the whole plan too, before any row is read: a refused plan has read and spent nothing
        check_plan(self.epsilon, delta, accountant, preprocessing_share, marginal_share)
        self.delta = delta
        self.schema = schema
        self.device = device
        self.seed = seed
        self.accountant = accountant
        self.preprocessing_share = preprocessing_share
        self.marginal_share = marginal_share
        # CPU threads of fit and sample: by default the cores free when fit starts, the policy
        # of ``synthgen run`` and the service (synthgen/threads.py)
        self.threads = training_threads(threads) if threads is not None else None
        # a progress bar during fit: None draws one in a terminal or a notebook
        self.progress = progress
        self._threads_used: int | None = None
        if config is None:  # the defaults, and $SYNTHGEN_TRAINING's replacements of them
            config = TrainingConfig(**{"epochs": default_epochs(self.epsilon),
                                       **env_overrides()})
        if epochs is not None:
            config = replace(config, epochs=float(epochs))
        if batch_size is not None:
            config = replace(config, batch_size=int(batch_size))
        self.config = config
        self.ledger: PrivacyLedger | None = None
        self.domains: list[ColumnDomain] = []
        self.encoder: TableEncoder | None = None
        self.generator: Generator | None = None
        self.cond: ConditionSampler | None = None
        self.info: dict[str, Any] = {}
        # What the last sample asked for (conditions, rebalancing, seed rows): the report's
        # ``sampling`` section. Not saved with the model.
        self.sampling: dict[str, Any] | None = None
        # What each release of the last fit returned, when it was asked to record them
        self.recording: Recording | None = None

    # ------------------------------------------------------------------------- fit

    def fit(
        self,
        df: pd.DataFrame,
        *,
        on_progress: Callable[[TrainingProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every_s: float = 60.0,
        record_releases: bool = False,
        replay: Recording | None = None,
    ) -> Synthesizer:
        """Fit the model to ``df``. Runs on ``threads`` CPU threads (default: the cores that
        are free now, the rule of ``synthgen run`` and the service) and draws a progress bar in
        a terminal or a notebook (``progress``); what it decided about the data (dropped
        columns, values folded into ``Other``) comes as :class:`~synthgen.SynthgenWarning`
        warnings, the lines ``synthgen run`` prints.

        Every read of its rows is a release of one
        :class:`~synthgen.privacy.release.Releaser`, which records the ledger entry as it
        returns the noisy value. ``record_releases`` keeps what each release returned in
        :attr:`recording`; ``replay`` returns such a recording's values instead of reading
        ``df`` (the replay test: a fit of a neighbouring table that replays this one's
        releases must give the same model and samples)."""
        from synthgen.progress import training_bar, wanted

        count = training_threads(self.threads)
        self._threads_used = count
        shown = wanted(self.progress)
        with torch_threads(count), training_bar(self.epsilon, enabled=shown) as bar:
            def both(p: TrainingProgress) -> None:
                bar(p)
                if on_progress is not None:
                    on_progress(p)

            # No progress when nobody reads it: each point's epsilon is an accountant call
            # (20 in a fit, 0.2-0.3 s each with PRV: a tenth of Adult's run on two cores).
            return self._fit(df, on_progress=both if shown or on_progress is not None
                             else None, should_stop=should_stop,
                             checkpoint_path=checkpoint_path,
                             checkpoint_every_s=checkpoint_every_s,
                             record_releases=record_releases, replay=replay)

    def _fit(
        self,
        df: pd.DataFrame,
        *,
        on_progress: Callable[[TrainingProgress], None] | None,
        should_stop: Callable[[], bool] | None,
        checkpoint_path: str | Path | None,
        checkpoint_every_s: float,
        record_releases: bool,
        replay: Recording | None,
    ) -> Synthesizer:
        clock = StageClock()  # wall and CPU seconds per stage (the evaluation's timings)
        df = check_table(df)
        device = resolve_device(self.device)
        ckpt = Path(checkpoint_path) if checkpoint_path else None
        resume = load_state(ckpt) if ckpt is not None and ckpt.exists() else None

        marginals: list[Marginal]
        rows_sd: float | None = None  # the DP row count's noise deviation
        if resume is not None:  # the DP releases were paid for already: never measure again
            extra = resume.extra
            self.ledger = PrivacyLedger.from_dict(extra["ledger"])
            self.domains = [ColumnDomain.from_dict(d) for d in extra["domains"]]
            self.info = dict(extra["info"])
            schema = TableSchema.model_validate(extra["schema"])
            marginals = [Marginal(**m) for m in extra.get("marginals", [])]
            release = Releaser(self.ledger, noise_rng(self.seed), record=record_releases,
                               replay=replay)
        else:
            schema = infer_schema(df, self.schema)
            delta = self.delta if self.delta is not None else default_delta()
            share = self.preprocessing_share
            # The threshold's share of delta is fixed: the accountant's delta is known before
            # the split of epsilon, so the one ledger of the fit exists before any read.
            self.ledger = PrivacyLedger(
                self.epsilon, delta, self.accountant,
                accountant_delta=delta - delta * BudgetPlan.threshold_delta_share)
            release = Releaser(self.ledger, noise_rng(self.seed),
                               streams={"probe": noise_rng(self.seed, 1)},
                               record=record_releases, replay=replay)
            if share is None:  # adapts to the table's size and width (privacy/budget.py)
                # sized by a small DP count of the rows of its own (the exact count is private)
                share = domain_share(self.epsilon, delta, size_probe(len(df), self.epsilon,
                                                                     release),
                                     len(schema.learned), discovering=any(
                                         discovers(c) for c in schema.learned))
            plan = BudgetPlan(self.epsilon, delta, share, marginal_share=self.marginal_share)
            estimate = estimate_domains(df, schema, plan, release)
            rows_sd = estimate.rows_sd
            self.domains = estimate.domains
            self.info = {"warnings": [*read_warnings(df), *estimate.warnings],
                         # the report says so (keep the seed secret); the seed itself is
                         # stored nowhere
                         "seeded": self.seed is not None,
                         "preprocessing_share": share,
                         # the code columns' weighting, paid out of the marginals' part
                         "code_extra": estimate.code_extra,
                         "rows_estimate": max(estimate.rows_estimate, 1.0)}
            if self.delta is None and estimate.rows_estimate * delta > 0.1:
                self.info["warnings"].append(
                    f"the default delta ({delta:g}) is above 1/(10 n) for a table of about "
                    f"{estimate.rows_estimate:,.0f} rows (a DP estimate): pass a smaller "
                    "--delta for a meaningful guarantee")
            # Dropped columns, values folded into Other, a default delta too large: through
            # Python's warnings too, as a library tells its caller.
            for message in self.info["warnings"]:
                warnings.warn(message, SynthgenWarning, stacklevel=3)  # fit's caller
        self.schema = schema
        clock.lap("domains")
        self.encoder = TableEncoder(self.domains)
        if not self.encoder.learned:
            raise BudgetError("no column of this table can be learned (all are identifiers)",
                              code="nothing-to-learn")
        data = self.encoder.encode(df)
        clock.lap("encoding")
        if resume is None:
            marginals = self._measure_marginals(data.slots, plan, release, rows_sd).marginals
        clock.lap("marginals")

        ledger = self.ledger
        # Sized by the DP row count: the exact count of rows is not public.
        rows_estimate = float(self.info["rows_estimate"])
        batch = self.config.expected_batch_size(max(int(round(rows_estimate)), 1))
        q = min(batch / rows_estimate, 1.0)
        steps = self.config.steps(max(int(round(rows_estimate)), 1))
        prior = list(ledger.history())
        if resume is not None:
            sigma = float(resume.extra["noise_multiplier"])
            steps = int(resume.extra["total_steps"])
            prior = prior[:-1]
        else:
            if epsilon_of(prior, ledger.accountant_delta, ledger.accountant) >= self.epsilon:
                raise BudgetError("the preprocessing share leaves no budget for training; "
                                  "lower --preprocessing-share or raise epsilon")
            sigma = calibrate_sgd_noise(prior, q, steps, self.epsilon, ledger.accountant_delta,
                                        ledger.accountant)
        # DP-SGD's entry (steps charged as they run) and the release every step's noisy
        # gradient comes from; a resumed run's entry is the checkpoint's
        sgd = release.dp_sgd(sigma, q, steps, self.config.max_grad_norm, device,
                             resume=resume is not None,
                             params={"sampling": "poisson",
                                     "clipping": "per-sample (fused ghost norms), real rows only"})
        clock.lap("calibration")

        trainer = GANTrainer(self.encoder, self.config, device, self.seed, marginals)
        if resume is not None:
            trainer.load_state(resume)

        # Progress shows epsilon at the next of 20 grid points: exact there, an upper bound in
        # between, and 20 accountant calls in all however long the run.
        grid = sorted({int(g) for g in np.linspace(0, steps, 21).round()[1:]})
        eps_cache: dict[int, float] = {}

        def epsilon_at(step: int) -> float:
            point = next((g for g in grid if g >= step), steps)
            if point not in eps_cache:
                eps_cache[point] = epsilon_of([*prior, (sigma, q, point)],
                                              ledger.accountant_delta, ledger.accountant)
            return eps_cache[point]

        def checkpoint(state: Any) -> None:
            if ckpt is None:
                return
            sgd.charge(state.step)
            state.extra = {
                "ledger": ledger.to_dict(),
                "domains": [d.to_dict() for d in self.domains],
                "info": self.info,
                "schema": schema.model_dump(mode="json"),
                "noise_multiplier": sigma,
                "total_steps": steps,
                "marginals": [asdict(m) for m in marginals],
            }
            save_state(state, ckpt)

        if ckpt is not None and resume is None:
            # Every release so far (domains, marginals, the DP row count behind the plan of
            # steps) is checkpointed before training publishes anything (progress): a retry
            # resumes from these releases instead of measuring again, and an attempt that dies
            # before this point has published nothing.
            checkpoint(trainer.state())
        ran = trainer.train(
            data,
            release=sgd,
            total_steps=steps,
            sampling_rate=q,
            batch=batch,
            epsilon_at=epsilon_at,
            on_progress=on_progress,
            should_stop=should_stop,
            checkpoint=checkpoint if ckpt is not None else None,
            checkpoint_every_s=checkpoint_every_s,
        )
        sgd.charge(ran)
        self.recording = release.recording
        clock.timings.update(trainer.timings)  # its warm-up and DP-SGD steps
        clock.lap("training")
        spent = ledger.epsilon()
        if spent > self.epsilon + 1e-9:  # calibration makes this impossible; refuse to release
            raise BudgetError(f"internal error: spent epsilon {spent} exceeds the target")
        self.generator = trainer.final_generator()
        self.cond = trainer.cond
        self.info.update({
            "rows": int(round(rows_estimate)),
            "columns": list(df.columns),
            "device": str(device),
            "completed": ran == steps,
            "training": {
                "steps": ran,
                "planned_steps": steps,
                "epochs": ran * q,
                "expected_batch_size": batch,
                "sampling_rate": q,
                "noise_multiplier": sigma,
                "max_grad_norm": self.config.max_grad_norm,
                "cuda_graphs": trainer.uses_cuda_graphs,
                **({"peak_gpu_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20}
                   if device.type == "cuda" else {}),
                "config": asdict(self.config),
            },
            "epsilon": spent,
        })
        clock.lap("accounting")
        timings = clock.timings
        for total, parts in (("preprocessing", ("domains", "encoding", "marginals")),):
            for unit in ("_s", "_cpu_s"):
                timings[total + unit] = sum(timings[p + unit] for p in parts)
        timings["threads"] = float(torch.get_num_threads())  # what the stages ran on
        self.info["timings"] = timings
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()
        return self

    def _measure_marginals(
        self, slots: np.ndarray, plan: BudgetPlan, release: Releaser,
        rows_sd: float | None = None,
    ) -> MarginalRelease:
        """The DP marginal tables (privacy/marginals.py), recorded in the ledger."""
        assert self.ledger is not None and self.encoder is not None
        learned = self.encoder.learned
        rows_estimate = float(self.info["rows_estimate"])
        share = plan.marginal_share
        if share is None:  # leave DP-SGD at least a tenth beside an adapted domain share
            share = min(marginal_share(rows_estimate, len(learned)),
                        max(0.0, 0.9 - plan.preprocessing_share))
        if share <= 0:
            return MarginalRelease()
        multipliers = marginal_multipliers(plan, share, self.ledger.accountant_delta,
                                           float(self.info.get("code_extra", 0.0)))
        numeric = [d.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) for d in learned]
        measured = measure_marginals(
            slots, [d.kind for d in learned], [d.frequencies for d in learned],
            [len(d.bins) if num else 0 for d, num in zip(learned, numeric, strict=True)],
            rows_estimate, multipliers, release,
            points=[d.lone_bins() if num else None
                    for d, num in zip(learned, numeric, strict=True)],
            public=[num and d.source == "public" for d, num in zip(learned, numeric,
                                                                    strict=True)],
            rows_sd=rows_sd,
            # a bin holding one whole value: a point (2), or an integer column's unit piece (1)
            single=[[2 if lo == hi else int(d.kind is ColumnKind.INTEGER and hi - lo == 1
                                            and float(lo).is_integer()) for lo, hi in d.bins]
                    if num else None for d, num in zip(learned, numeric, strict=True)],
        )
        # The one-way tables measured every slot with more budget than the domain histograms:
        # the generator's conditional vectors are drawn from them (post-processing).
        for domain, frequencies in zip(learned, measured.frequencies, strict=True):
            domain.frequencies = frequencies
        self.info["marginal_share"] = share
        return measured

    # ------------------------------------------------------------------------- sample

    def _require_fitted(self) -> tuple[TableEncoder, Generator, ConditionSampler]:
        if self.encoder is None or self.generator is None or self.cond is None:
            raise RuntimeError("call fit() or load() first")
        return self.encoder, self.generator, self.cond

    def default_rows(self, held_out_share: float = 0.0) -> int:
        """The output size when none is asked for, the one rule of the library, ``synthgen run``
        and the service: about as many rows as the input, from the DP row count of the rows the
        model was trained on over the public share kept for training (``held_out_share``, the
        holdout's share when one was split off: ``synthgen run --report`` and service jobs with
        an audit or a target). Never an exact count, which is private."""
        self._require_fitted()
        if not 0.0 <= held_out_share < 1.0:
            raise ValueError(f"held_out_share must be in [0, 1), not {held_out_share}")
        return max(1, int(round(float(self.info.get("rows", 0)) / (1.0 - held_out_share))))

    def sample_chunks(
        self, n: int | None = None, *, chunk: int | None = None, seed: int | None = None,
        conditions: ConditionsSpec = None, rebalance: RebalanceSpec = None,
        seed_rows: pd.DataFrame | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Synthetic rows in chunks of at most ``chunk`` rows (for streaming large outputs;
        default 65,536 on a CPU, up to 1,048,576 on a GPU).

        ``conditions``, ``rebalance`` and ``seed_rows`` ask for rows (see :meth:`sample`);
        they are checked here, before the first chunk is asked for (a caller writing a file
        opens it after this call).
        """
        self._require_fitted()
        if seed_rows is not None and n is None:
            n = len(seed_rows)
        n = self.default_rows() if n is None else int(n)
        plan = self.sampling_plan(n, conditions, rebalance, seed_rows)
        if seed is None:
            seed = self.seed if self.seed is not None else fresh_seed()
        return self._chunks(n, chunk, seed, plan)

    def _chunks(self, n: int, chunk: int | None, seed: int, plan: SamplingPlan | None
                ) -> Iterator[pd.DataFrame]:
        encoder, generator, cond = self._require_fitted()
        gen = torch.Generator(device=cond.device)
        gen.manual_seed(seed)
        # On a GPU the host's decoding is what bounds the rate: decode columns on every core
        # (the generator runs ahead on the device, needing one thread to launch). On a CPU the
        # cores are the generator's.
        # The decoding arithmetic runs on the GPU too; the host only wraps the arrays.
        on_gpu = cond.device.type == "cuda"
        threads = (os.cpu_count() or 1) if on_gpu else 1
        decoder = DeviceDecoder(encoder, cond.device) if on_gpu else None
        if plan is not None:
            yield from self._conditioned_chunks(plan, chunk, seed, threads, decoder)
            return
        for slots, scalars in generate_slots(generator, cond, n, encoder.nullable, chunk=chunk,
                                             gen=gen, decoder=decoder,
                                             drawn=encoder.drawn_positions):
            yield encoder.decode(slots, scalars, threads=threads, predecoded=on_gpu)

    def sampling_plan(
        self, n: int, conditions: ConditionsSpec = None, rebalance: RebalanceSpec = None,
        seed_rows: pd.DataFrame | None = None,
    ) -> SamplingPlan | None:
        """The checked request in the encoder's terms (None for plain sampling); raises a
        ConditionError that says what is wrong. Records what was asked in :attr:`sampling`
        (the report's ``sampling`` section)."""
        encoder, _, cond = self._require_fitted()
        self.sampling = None
        if not conditions and not rebalance and seed_rows is None:
            return None
        spec = check_conditions(conditions, rebalance, *facts_of(encoder.domains))
        plan = SamplingPlan(encoder, cond, spec, n, seed_rows)
        self.sampling = plan.describe()
        return plan

    def _conditioned_chunks(
        self, plan: SamplingPlan, chunk: int | None, seed: int, threads: int,
        decoder: DeviceDecoder | None,
    ) -> Iterator[pd.DataFrame]:
        encoder, generator, cond = self._require_fitted()
        gen = torch.Generator(device=cond.device)
        gen.manual_seed(seed)
        rng = np.random.default_rng(seed)
        chunk = chunk or default_chunk(cond.device, encoder.width)

        def decode(slots: torch.Tensor, scalars: torch.Tensor) -> pd.DataFrame:
            if decoder is not None:
                slots, scalars = decoder(slots, scalars)
            return encoder.decode(slots.cpu().numpy(), scalars.cpu().numpy(), threads=threads,
                                  predecoded=decoder is not None)

        for start in range(0, plan.n, chunk):
            size = min(chunk, plan.n - start)
            df = generate_rows(generator, cond, encoder, plan, plan.rows(start, size, rng),
                               decode, gen, chunk)
            yield plan.finish(df, start)

    def sample(
        self, n: int | None = None, *, seed: int | None = None,
        conditions: ConditionsSpec = None, rebalance: RebalanceSpec = None,
        seed_rows: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """``n`` synthetic rows (default: :meth:`default_rows`).

        ``conditions`` fixes values in every row: ``{"sex": "Female", "age": ">=60"}`` (or
        ``["sex=Female", "age>=60"]``). ``rebalance`` sets a categorical column's shares:
        ``{"Y": {">50K": 0.5}}``. ``seed_rows`` is a table of partial rows: each output row
        keeps the seed row's non-empty values and the model fills in the rest. All of it is
        post-processing of the released model: no budget, no training row.
        """
        t0 = time.perf_counter()
        count = self.threads or self._threads_used or training_threads()
        with torch_threads(count):
            parts = list(self.sample_chunks(n, seed=seed, conditions=conditions,
                                            rebalance=rebalance, seed_rows=seed_rows))
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        self.info.setdefault("timings", {})["sampling_s"] = time.perf_counter() - t0
        return out

    # ------------------------------------------------------------------------- report

    def schema_used(self) -> TableSchema:
        """The schema this fit used, completed with what it released: each column's kind,
        released categories (and whether an ``Other`` bucket holds the rest), numeric range,
        codes, nullability and format, beside what was declared. DP outputs and declarations
        only: give it back (``Synthesizer(schema=...)``, ``--schema``) to reuse those decisions
        at no further cost, after reviewing or correcting them
        (:func:`synthgen.schema.write_schema` writes it as a schema file)."""
        if self.schema is None or not self.domains:
            raise RuntimeError("call fit() or load() first")
        return TableSchema(columns=[d.to_spec(self.schema[d.name]) for d in self.domains])

    @property
    def spent_epsilon(self) -> float:
        return float(self.info.get("epsilon", 0.0))

    def report(self) -> dict[str, Any]:
        from synthgen.report import build_report

        return build_report(self)

    # ------------------------------------------------------------------------- artifact

    def save(self, path: str | Path) -> None:
        """Write the generator, schema, encoder parameters and ledger; never a training row."""
        encoder, generator, cond = self._require_fitted()
        assert self.ledger is not None and self.schema is not None
        weights = io.BytesIO()
        torch.save({k: v.cpu() for k, v in generator.state_dict().items()}, weights)
        meta = {
            "format": ARTIFACT_FORMAT,
            "synthgen_version": __version__,
            "epsilon_target": self.epsilon,
            "schema": self.schema.model_dump(mode="json"),
            "domains": [d.to_dict() for d in self.domains],
            "ledger": self.ledger.to_dict(),
            # the run's timings grow with the exact row count: not in the public model
            "info": {k: v for k, v in self.info.items() if k != "timings"},
            "generator": {
                "noise_dim": generator.noise_dim,
                "cond_dim": cond.width,
                "hidden": list(self.config.g_hidden),
            },
            "config": asdict(self.config),
            "accountant": self.accountant,
        }
        import json

        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("meta.json", json.dumps(meta, default=str))
            zf.writestr("generator.pt", weights.getvalue())

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Synthesizer:
        import json

        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read("meta.json"))
                weights = torch.load(io.BytesIO(zf.read("generator.pt")), weights_only=True,
                                     map_location="cpu")
        except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path} is not a synthgen model: {exc}") from exc
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ArtifactError(f"{path} has model format {meta.get('format')}, "
                                f"this synthgen reads {ARTIFACT_FORMAT}")
        config_data = dict(meta["config"])
        for key in ("d_hidden", "g_hidden"):
            config_data[key] = tuple(config_data[key])
        self = cls(meta["epsilon_target"], meta["ledger"]["target_delta"], device=device,
                   accountant=meta["accountant"], config=TrainingConfig(**config_data))
        self.schema = TableSchema.model_validate(meta["schema"])
        self.domains = [ColumnDomain.from_dict(d) for d in meta["domains"]]
        self.ledger = PrivacyLedger.from_dict(meta["ledger"])
        self.info = meta["info"]
        self.encoder = TableEncoder(self.domains)
        dev = resolve_device(device)
        g = meta["generator"]
        generator = Generator(g["noise_dim"], g["cond_dim"], self.encoder.spans,
                              tuple(g["hidden"]), self.encoder.empty_slots())
        generator.load_state_dict(weights)
        self.generator = generator.to(dev)
        self.cond = ConditionSampler.for_encoder(self.encoder, dev)
        return self
