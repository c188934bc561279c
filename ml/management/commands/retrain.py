"""``python manage.py retrain [--kind K|all] [--as-of YYYY-MM-DD] [--horizon-days N] [--sync]``."""
import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from crm.jobs import BackgroundUnavailable
from ml import services
from ml.models import TrainingRun


class Command(BaseCommand):
    help = ("Train and publish new models. Without --sync the runs are queued for Celery workers and their ids "
            "printed; with --sync they run in this process and their status and holdout metrics are printed.")

    def add_arguments(self, parser):
        parser.add_argument("--kind", default="all", choices=[*TrainingRun.Kind.values, "all"])
        parser.add_argument("--as-of", dest="as_of", type=date.fromisoformat, default=None,
                            help="the last day of data the models may see (default: the day of the latest interaction)")
        parser.add_argument("--horizon-days", dest="horizon_days", type=int, default=90)
        parser.add_argument("--algorithm", default="auto", help="force an algorithm instead of choosing on validation")
        parser.add_argument("--sync", action="store_true", help="run in this process instead of a worker")

    def handle(self, *args, **options):
        kinds = services.KIND_ORDER if options["kind"] == "all" else (options["kind"],)
        as_of = options["as_of"]
        if isinstance(as_of, str):
            as_of = date.fromisoformat(as_of)
        if options["horizon_days"] < 1:
            raise CommandError("--horizon-days must be at least 1")
        common = {"as_of": as_of, "horizon_days": options["horizon_days"], "algorithm": options["algorithm"]}
        failed = []
        for kind in kinds:
            try:
                if options["sync"]:
                    run = services.run_now(kind, trigger="command", **common)
                    self._print_run(run)
                    if run.status not in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.SKIPPED):
                        failed.append(f"{kind}: {run.error.splitlines()[0] if run.error else run.status}")
                else:
                    run, created = services.request_retrain(kind, trigger="command", **common)
                    self.stdout.write(f"{kind}: run {run.pk} {'queued' if created else 'already queued'}")
            except (services.RetrainRefused, BackgroundUnavailable) as exc:
                self.stdout.write(f"{kind}: failed: {exc}")
                failed.append(f"{kind}: {exc}")
        if failed:
            # Exit 1 when a kind failed; a kind skipped for a stated reason (the data cannot support
            # it) is an outcome, not a failure.
            raise CommandError("; ".join(failed))

    def _print_run(self, run):
        """One line per kind: what happened and why; then its holdout figures."""
        took = f"{run.timings.get('total', 0):.1f} s"
        head = f"{run.kind}: run {run.pk} "
        if run.status == TrainingRun.Status.SUCCEEDED:
            summary = (run.metrics or {}).get("outcome", {}).get("summary") or run.chosen_algorithm
            line = (f"{head}{'published' if run.is_published else 'succeeded'}: {summary}; "
                    f"as of {run.as_of}, horizon {run.horizon_days} days, {took}")
        else:
            reason = run.error.splitlines()[0] if run.error else ""
            line = f"{head}{run.status}" + (f": {reason}" if reason else "") + f" ({took})"
        self.stdout.write(line)
        summary = holdout_summary(run)
        if summary:
            self.stdout.write("  holdout: " + json.dumps(summary))


def holdout_summary(run) -> dict:
    m = run.metrics or {}
    if run.kind == TrainingRun.Kind.FORECAST and "model" in m:
        model = m["model"]
        figures = {"orders": ("mae", "rmse", "total_pct_error", "spearman"),
                   "spend": ("mae", "rmse", "total_pct_error", "spearman"), "churn": ("auc", "brier")}
        return {"window": {"cut": m.get("cut"), "days": m.get("window_days")},
                **{target: ({k: model[target].get(k) for k in keys} if model.get(target) else "not forecast")
                   for target, keys in figures.items()}}
    if run.kind == TrainingRun.Kind.FORECAST and "backtest" in m:
        return {"validated": False, "reason": m["backtest"].get("reason")}
    if run.kind == TrainingRun.Kind.SEGMENTATION and "comparison" in m:
        return {"chosen": m.get("chosen"), "comparison": {k: (v.get("score") if isinstance(v, dict) else v)
                                                          for k, v in m["comparison"].items()}}
    return {k: v for k, v in m.items() if k in ("chosen", "summary")}
