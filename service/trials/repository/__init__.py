"""SQL for trials. Repositories execute; they never commit (the service owns the transaction).

Each hot-path operation is one statement (data-modifying CTEs) so that a hand-out, a report or a
completion costs one round trip besides the transaction's own. Every statement that changes a
trial stamps ``hpo_trials.change_xid`` (see ``service.sampling.repository``), appends to
``hpo_events``, and every change that makes work available sends ``NOTIFY hpo_work``
(delivered at commit) to wake long-polling claims.

Modules: ``handout`` (ask, claim, enqueue), ``leases`` (heartbeat, report, finish, release),
``reads`` (the API's trial reads), ``attributes``, ``maintenance`` (the reaper), ``events``,
``params`` (a parameter suggested by the objective, define-by-run), ``lineage`` (a PBT
child trial), ``unfinished`` (trials nothing more can happen to, finished as pruned).
"""

from service.trials.repository.attributes import (
    flush_journal,
    upsert_study_system_attrs,
    upsert_trial_attrs,
)
from service.trials.repository.events import event
from service.trials.repository.handout import (
    NewLease,
    claim_candidates,
    count_unstarted_queued,
    enqueue_trial,
    insert_leased_trial,
    lease_paused_trial,
    lease_queued_trial,
    touch_worker,
)
from service.trials.repository.leases import (
    Released,
    Renewed,
    Reported,
    finish,
    grant_resource,
    heartbeat,
    lease_state,
    mark_paused,
    release,
    report,
    touch_trial,
)
from service.trials.repository.lineage import checkpoint_steps, insert_child
from service.trials.repository.maintenance import (
    Reaped,
    purge_events,
    purge_idempotency_keys,
    reap_expired,
)
from service.trials.repository.params import add_param
from service.trials.repository.reads import (
    best_trial_id,
    complete_values,
    get_trial,
    get_trials,
    list_trials,
    study_directions,
    study_of_trial,
)
from service.trials.repository.rows import LeaseState, TrialRow
from service.trials.repository.unfinished import finish_paused, finish_waiting

__all__ = [
    "LeaseState",
    "NewLease",
    "Reaped",
    "Released",
    "Renewed",
    "Reported",
    "TrialRow",
    "add_param",
    "best_trial_id",
    "checkpoint_steps",
    "claim_candidates",
    "complete_values",
    "count_unstarted_queued",
    "enqueue_trial",
    "event",
    "finish",
    "finish_paused",
    "finish_waiting",
    "flush_journal",
    "get_trial",
    "get_trials",
    "grant_resource",
    "heartbeat",
    "insert_child",
    "insert_leased_trial",
    "lease_paused_trial",
    "lease_queued_trial",
    "lease_state",
    "list_trials",
    "mark_paused",
    "purge_events",
    "purge_idempotency_keys",
    "reap_expired",
    "release",
    "report",
    "study_directions",
    "study_of_trial",
    "touch_trial",
    "touch_worker",
    "upsert_study_system_attrs",
    "upsert_trial_attrs",
]
