"""The discrete-event engine: one heap of timed events, devices that batch, a router that picks.

Model (what each piece stands for, and why it is modelled so):

* **Arrivals** are Poisson with rate ``load x fleet capacity x diurnal x bursts`` (load steps
  change ``load``), drawn by thinning so any rate curve is exact.
* **Router**: each request of a model is offered to that model's group through the data plane's
  selection rule (:mod:`gpufleet.simulate.select`) with the weights
  :func:`gpufleet.router.weights.compute_group` gives. A host at its concurrency cap cannot take
  it; with ``attempts > 0`` a pick that finds a full host is spent and the next pick is tried
  (Envoy retry with a host predicate), with ``attempts = 0`` any free host is found. When no pick
  succeeds the request overflows: ``retry`` (503 + Retry-After, the client comes back after
  ``retry_after_s``), ``queue`` (FIFO at the router until a slot frees) or ``reject``.
* **Devices** batch: with b sequences in flight each decodes at ``s1 / (1 + alpha (b - 1))``
  tokens/s (processor sharing with a speed that falls with the batch), tracked in virtual time so
  a change of b costs O(log b). A request's work is its output tokens plus its prompt tokens over
  ``prefill_speedup``. With ``alpha = 0`` every slot is an independent server (M/M/c when sizes
  are exponential).
* **Failures** happen before the first byte with the operator's failure probability; the router
  retries once on another pick. **Outages** take a device down: its in-flight requests fail
  (retried once) and it leaves the group until it is repaired.
* **k** is static or stepped by the project's k controller every interval with the measured
  in-flight / capacity; **reputation** (completion tier x throughput score) is recomputed every
  ``update_interval_s`` from hourly buckets (``hour_s`` compresses the clock), and an hour below
  the completion floor is an offense on the project's penalty ladder: the pool leaves routing
  until the timeout ends (the safety cap applies).
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from gpufleet.simulate import adapters
from gpufleet.simulate.fleet import Fleet, build_fleet, sampler, stream
from gpufleet.simulate.scenario import Scenario
from gpufleet.simulate.select import make_selector

ARRIVAL, COMPLETE, RETRY, SAMPLE, CONTROL, REPUTATION, HOUR, DOWN, UP, PENALTY_END, MEASURE = range(11)


@dataclass
class RawResult:
    """Everything measured in one run, before summarising (see ``metrics``)."""

    scenario: Scenario
    fleet: Fleet
    queue_delay: array[float]
    latency: array[float]
    measured_arrivals: int
    rejected: int
    failed: int
    retries_503: int
    dev_jobs: list[int]
    dev_tokens: list[int]
    dev_failures: list[int]
    dev_busy_slot_s: list[float]
    dev_up_s: list[float]
    measured_span_s: float
    series: list[dict[str, float]]
    penalties: list[dict[str, Any]]
    k_changes: list[tuple[float, float, str]]
    share_exact: bool
    intended_share: list[float]
    events: int
    sim_end_s: float
    sources: dict[str, str]
    reputation_final: list[float] = field(default_factory=list)


def run(scn: Scenario, fleet: Fleet | None = None) -> RawResult:
    """Simulate one scenario; deterministic for a given scenario (seed included)."""
    fl = fleet if fleet is not None else build_fleet(scn)
    seed = scn.seed
    r_arr = stream(seed, "arrivals")
    r_size = stream(seed, "sizes")
    r_fail = stream(seed, "failures")
    r_sel = stream(seed, "selection")
    r_out = stream(seed, "outages")

    n_dev = fl.n_devices
    n_models = len(fl.model_names)
    router = scn.router
    attempts = router.attempts
    overflow = router.overflow
    retry_after = router.retry_after_s
    retry_limit = router.retry_limit
    retry_failed_once = router.retry_failed_once
    cap = fl.dev_cap
    dev_op = fl.dev_op
    dev_model = fl.dev_model
    op_fail = fl.op_failure
    prefill = [m.prefill_speedup for m in scn.models]
    # Per-sequence speed by batch size: rate[d][b].
    rate = [
        [0.0] + [fl.dev_s1[d] / (1 + fl.dev_alpha[d] * (b - 1)) for b in range(1, cap[d] + 1)]
        for d in range(n_dev)
    ]

    # ---- k, reputation, eligibility
    kspec = scn.k
    controller: adapters.KController | None = None
    if kspec.mode == "controller":
        settings = kspec.controller.model_dump()
        controller = adapters.KController.create(settings, settings.pop("k_initial", None))
        k = controller.k
    else:
        k = kspec.value
    rep_spec = scn.reputation
    reputation: adapters.Reputation | None = None
    if rep_spec.enabled and not adapters.reputation_available():
        fl.notes.append("reputation disabled: gpufleet.reputation is not installed")
    elif rep_spec.enabled:
        reputation = adapters.Reputation(
            min_sample=rep_spec.min_sample,
            floor=rep_spec.penalty_floor,
            min_requests=rep_spec.penalty_min_requests,
            hour_s=rep_spec.hour_s,
        )
    rep_weight: list[Fraction] = [Fraction(1)] * n_dev
    up = [True] * n_dev
    penalised_ops: set[int] = set()

    def eligible(d: int) -> bool:
        return up[d] and dev_op[d] not in penalised_ops

    intended = [0.0] * n_dev
    share_exact = True

    def compute_weights() -> list[float]:
        nonlocal share_exact
        share_exact = True
        ws = [0.0] * n_dev
        for m in range(n_models):
            members = [d for d in fl.model_devices[m] if eligible(d)]
            if not members:
                continue
            w, shares, exact = adapters.group_weights(
                fl.model_names[m], members, fl.dev_eff_stake_base, rep_weight, k, cap, dev_op
            )
            share_exact = share_exact and exact
            for d, wd in w.items():
                ws[d] = float(wd)
                intended[d] = shares[d]
        return ws

    weights_by_dev = compute_weights()
    selectors = [
        make_selector(router.policy, fl.model_devices[m], weights_by_dev, n_dev, r_sel)
        for m in range(n_models)
    ]
    sel_pick = [s.pick for s in selectors]
    sel_add = [s.add for s in selectors]
    sel_remove = [s.remove for s in selectors]
    find_free = attempts == 0  # members = hosts with a free slot, else members = eligible hosts

    def refresh_member(d: int) -> None:
        m = dev_model[d]
        ok = eligible(d) and (not find_free or active[d] < cap[d])
        if ok:
            sel_add[m](d)
        else:
            sel_remove[m](d)

    # ---- device state (processor sharing in virtual time)
    active = [0] * n_dev
    vtime = [0.0] * n_dev
    tlast = [0.0] * n_dev
    busy = [0.0] * n_dev
    dheap: list[list[tuple[float, int]]] = [[] for _ in range(n_dev)]
    ver = [0] * n_dev

    # ---- requests
    req_t0 = array("d")
    req_work = array("d")
    req_tokens = array("l")
    req_model = array("b") if n_models < 128 else array("l")
    req_tries = array("l")
    req_retried = bytearray()
    req_start = array("d")

    # ---- measurements
    warmup = scn.warmup_s
    duration = scn.duration_s
    max_requests = scn.max_requests or (1 << 62)
    queue_delay = array("d")
    latency = array("d")
    dev_jobs = [0] * n_dev
    dev_tokens = [0] * n_dev
    dev_fail = [0] * n_dev
    up_since = [0.0] * n_dev
    up_total = [0.0] * n_dev
    measured = 0
    rejected = 0
    failed = 0
    retries_503 = 0
    series: list[dict[str, float]] = []
    penalties: list[dict[str, Any]] = []
    k_changes: list[tuple[float, float, str]] = [(0.0, k, "initial")]
    queues: list[deque[int]] = [deque() for _ in range(n_models)]
    host_queue = overflow == "host"
    hq: list[deque[int]] = [deque() for _ in range(n_dev)]
    total_active = 0
    util_int = 0.0
    util_last = 0.0
    # Reputation bookkeeping: current-hour counts per operator and per device, closed hours.
    hour_done = [0] * fl.n_operators
    hour_fail = [0] * fl.n_operators
    hours_closed: deque[tuple[list[int], list[int]]] = deque()
    win_done = [0] * fl.n_operators
    win_fail = [0] * fl.n_operators
    tput_score: list[Fraction] = [Fraction(1)] * n_dev
    dev_hour_done = [0] * n_dev
    dev_hour_tokens = [0] * n_dev
    dev_hour_decode = [0.0] * n_dev
    dev_hours: list[deque[tuple[int, int, int]]] = [deque(maxlen=rep_spec.window_hours) for _ in range(n_dev)]

    events: list[tuple[float, int, int, int, int]] = []
    seq = 0
    push = heapq.heappush
    pop = heapq.heappop

    # ---- arrival process (thinning)
    arr = scn.arrivals
    cap_rps = sum(fl.model_capacity_rps)
    loads = [arr.load] + [s.load for s in arr.steps]
    steps = sorted((s.at_s, s.load) for s in arr.steps)
    burst_max = 1.0
    for burst in arr.bursts:
        burst_max *= max(1.0, burst.factor)
    lam_max = max(loads) * cap_rps * (1 + arr.diurnal.amplitude) * burst_max
    diurnal_a = arr.diurnal.amplitude
    diurnal_w = 2 * math.pi / arr.diurnal.period_s
    diurnal_p = arr.diurnal.phase_s
    bursts = [(x.at_s, x.at_s + x.duration_s, x.factor) for x in arr.bursts]
    constant_rate = diurnal_a == 0 and not bursts and not steps
    model_cum: list[float] = []
    acc = 0.0
    for share in fl.model_traffic:
        acc += share
        model_cum.append(acc)
    draw_out = sampler(r_size, scn.requests.output_tokens)
    draw_prompt = sampler(r_size, scn.requests.prompt_tokens)

    def rate_at(t: float) -> float:
        load = arr.load
        for at, value in steps:
            if t >= at:
                load = value
        lam = load * cap_rps
        if diurnal_a:
            lam *= 1 + diurnal_a * math.sin(diurnal_w * (t - diurnal_p))
        for b0, b1, f in bursts:
            if b0 <= t < b1:
                lam *= f
        return lam

    def next_arrival(t: float) -> float:
        while True:
            t += r_arr.expovariate(lam_max)
            if constant_rate or r_arr.random() * lam_max <= rate_at(t):
                return t

    n_arrivals = 0
    t_first = next_arrival(0.0)
    if t_first <= duration:
        push(events, (t_first, seq, ARRIVAL, 0, 0))
        seq += 1

    def schedule(d: int, now: float) -> None:
        nonlocal seq
        ver[d] += 1
        h = dheap[d]
        if h:
            push(events, (now + (h[0][0] - vtime[d]) / rate[d][active[d]], seq, COMPLETE, d, ver[d]))
            seq += 1

    def start(d: int, rid: int, now: float) -> None:
        """Put request ``rid`` on device ``d`` (it has a free slot)."""
        nonlocal total_active, util_int, util_last
        n = active[d]
        if n:
            dt = now - tlast[d]
            vtime[d] += dt * rate[d][n]
            busy[d] += n * dt
        tlast[d] = now
        req_start[rid] = now
        heapq.heappush(dheap[d], (vtime[d] + req_work[rid], rid))
        active[d] = n + 1
        util_int += total_active * (now - util_last)
        util_last = now
        total_active += 1
        if find_free and n + 1 >= cap[d]:
            sel_remove[dev_model[d]](d)
        schedule(d, now)

    def dispatch(rid: int, now: float, from_queue: bool = False) -> bool:
        """Route one request; False when it overflowed (already handled unless ``from_queue``)."""
        nonlocal seq, rejected, failed, retries_503, measured
        m = req_model[rid]
        pick = sel_pick[m]
        d = -1
        c = -1
        tries = 1 if host_queue or not attempts else attempts
        while tries:
            c = pick()
            if c < 0:
                break
            if active[c] < cap[c]:
                d = c
                break
            tries -= 1
        if d < 0:
            if from_queue:
                return False
            if host_queue and c >= 0:
                # Envoy: the picked host is at its connection limit; the request waits in that
                # host's pending queue until one of its connections frees.
                hq[c].append(rid)
                return True
            if overflow == "queue":
                queues[m].append(rid)
            elif overflow == "retry":
                req_tries[rid] += 1
                if req_tries[rid] > retry_limit:
                    rejected += req_t0[rid] >= warmup
                else:
                    retries_503 += 1
                    push(events, (now + retry_after, seq, RETRY, rid, 0))
                    seq += 1
            elif overflow == "reject":
                rejected += req_t0[rid] >= warmup
            else:  # host mode with no eligible host at all: 503 + Retry-After
                req_tries[rid] += 1
                if req_tries[rid] > retry_limit:
                    rejected += req_t0[rid] >= warmup
                else:
                    retries_503 += 1
                    push(events, (now + retry_after, seq, RETRY, rid, 0))
                    seq += 1
            return False
        p = op_fail[dev_op[d]]
        if p and r_fail.random() < p:
            # Fails before the first byte: the device answers for it; retried once elsewhere.
            dev_fail[d] += 1
            hour_fail[dev_op[d]] += 1
            if retry_failed_once and not req_retried[rid]:
                req_retried[rid] = 1
                return dispatch(rid, now, from_queue)
            failed += req_t0[rid] >= warmup
            return True
        if req_t0[rid] >= warmup:
            queue_delay.append(now - req_t0[rid])
        start(d, rid, now)
        return True

    def drain_queue(m: int, now: float, freed: int) -> None:
        q = queues[m]
        while q:
            rid = q[0]
            if not dispatch(rid, now, from_queue=True):
                # The router holds the request until a slot frees; the freed one takes it.
                if freed >= 0 and eligible(freed) and active[freed] < cap[freed]:
                    if req_t0[rid] >= warmup:
                        queue_delay.append(now - req_t0[rid])
                    start(freed, rid, now)
                    q.popleft()
                    freed = -1
                    continue
                return
            q.popleft()

    # ---- periodic events
    if scn.sample_interval_s:
        push(events, (scn.sample_interval_s, seq, SAMPLE, 0, 0))
        seq += 1
    if controller is not None:
        push(events, (controller.interval_s, seq, CONTROL, 0, 0))
        seq += 1
    if reputation is not None:
        push(events, (rep_spec.update_interval_s, seq, REPUTATION, 0, 0))
        seq += 1
        push(events, (rep_spec.hour_s, seq, HOUR, 0, 0))
        seq += 1
    out_spec = scn.outages
    if out_spec.mtbf_s:
        for d in range(n_dev):
            push(events, (r_out.expovariate(1.0 / out_spec.mtbf_s), seq, DOWN, d, 1))
            seq += 1
    for so in out_spec.scheduled:
        victims = r_out.sample(range(n_dev), max(1, round(so.fraction * n_dev)))
        for d in sorted(victims):
            push(events, (so.at_s, seq, DOWN, d, 0))
            seq += 1
            push(events, (so.at_s + so.duration_s, seq, UP, d, 0))
            seq += 1

    total_slots = fl.total_slots
    # Busy slot-seconds and up-seconds are reported for the measured window [warmup, duration]
    # only (not the ramp-up, not the drain after arrivals stop): snapshots at both ends.
    marks: list[tuple[list[float], list[float]]] = []
    push(events, (warmup, seq, MEASURE, 0, 0))
    seq += 1
    push(events, (duration, seq, MEASURE, 1, 0))
    seq += 1

    def snapshot(now: float) -> None:
        for d in range(n_dev):
            n = active[d]
            if n and now > tlast[d]:
                dt = now - tlast[d]
                vtime[d] += dt * rate[d][n]
                busy[d] += n * dt
                tlast[d] = now
            if up[d] and now > up_since[d]:
                up_total[d] += now - up_since[d]
                up_since[d] = now
        marks.append((busy[:], up_total[:]))

    last_sample_t = 0.0
    last_sample_int = 0.0
    last_control_t = 0.0
    last_control_int = 0.0
    arrivals_since = 0
    n_events = 0
    arrivals_open = True
    now = 0.0
    last_work = 0.0

    def reweight(now: float, why: str) -> None:
        weights = compute_weights()
        for d in range(n_dev):
            refresh_member(d)
        for s in selectors:
            s.set_weights(weights)

    def take_down(d: int, now: float) -> None:
        nonlocal total_active, util_int, util_last, failed
        if not up[d]:
            return
        up_total[d] += now - up_since[d]
        n = active[d]
        if n:
            busy[d] += n * (now - tlast[d])
        tlast[d] = now
        up[d] = False
        refresh_member(d)
        victims = [rid for _, rid in dheap[d]]
        dheap[d] = []
        waiting = list(hq[d])
        hq[d].clear()
        util_int += total_active * (now - util_last)
        util_last = now
        total_active -= n
        active[d] = 0
        vtime[d] = 0.0
        ver[d] += 1
        # The router drops the host from its group; the others keep their weights (Envoy
        # renormalises over the remaining hosts), so no recompute is needed.
        for rid in victims:
            dev_fail[d] += 1
            hour_fail[dev_op[d]] += 1
            if retry_failed_once and not req_retried[rid]:
                req_retried[rid] = 1
                dispatch(rid, now)
            elif req_t0[rid] >= warmup:
                failed += 1
        for rid in waiting:
            # Never sent: Envoy answers the pending request with a 503 and the retry picks again.
            dispatch(rid, now)

    def bring_up(d: int, now: float) -> None:
        if up[d]:
            return
        up[d] = True
        up_since[d] = now
        tlast[d] = now
        refresh_member(d)
        m = dev_model[d]
        if queues[m]:
            drain_queue(m, now, d)

    while events:
        now, _, kind, a, b = pop(events)
        n_events += 1
        if kind == COMPLETE:
            d = a
            if b != ver[d]:
                continue
            last_work = now
            n = active[d]
            dt = now - tlast[d]
            vtime[d] += dt * rate[d][n]
            busy[d] += n * dt
            tlast[d] = now
            _, rid = heapq.heappop(dheap[d])
            active[d] = n - 1
            util_int += total_active * (now - util_last)
            util_last = now
            total_active -= 1
            t0 = req_t0[rid]
            tokens = req_tokens[rid]
            op = dev_op[d]
            hour_done[op] += 1
            dev_hour_done[d] += 1
            dev_hour_tokens[d] += tokens
            if t0 >= warmup:
                latency.append(now - t0)
                dev_jobs[d] += 1
                dev_tokens[d] += tokens
            if reputation is not None:
                # Decode time the router sees (latency minus time to first byte): the output
                # tokens' part of the time on the device.
                work = req_work[rid]
                if work > 0:
                    dev_hour_decode[d] += (now - req_start[rid]) * (tokens / work)
            if hq[d]:
                # The host's pending queue takes the freed connection; the request can still fail
                # before its first byte (then it is retried once with a new pick).
                q = hq[d]
                p_fail = op_fail[op]
                while q and active[d] < cap[d]:
                    nxt = q.popleft()
                    if p_fail and r_fail.random() < p_fail:
                        dev_fail[d] += 1
                        hour_fail[op] += 1
                        if retry_failed_once and not req_retried[nxt]:
                            req_retried[nxt] = 1
                            dispatch(nxt, now)
                        elif req_t0[nxt] >= warmup:
                            failed += 1
                        continue
                    if req_t0[nxt] >= warmup:
                        queue_delay.append(now - req_t0[nxt])
                    start(d, nxt, now)  # reschedules the device
                if active[d] >= n:
                    continue  # something started here (start() rescheduled the device)
            if find_free and n == cap[d] and eligible(d):
                sel_add[dev_model[d]](d)
            m = dev_model[d]
            if queues[m]:
                drain_queue(m, now, d)
            schedule(d, now)
        elif kind == ARRIVAL:
            last_work = now
            r = r_size.random()
            m = 0
            while m < n_models - 1 and r > model_cum[m]:
                m += 1
            out_tokens = draw_out()
            prompt = draw_prompt()
            rid = len(req_t0)
            req_t0.append(now)
            req_work.append(out_tokens + prompt / prefill[m])
            req_tokens.append(int(out_tokens))
            req_model.append(m)
            req_tries.append(0)
            req_retried.append(0)
            req_start.append(0.0)
            if now >= warmup:
                measured += 1
            n_arrivals += 1
            arrivals_since += 1
            dispatch(rid, now)
            if n_arrivals < max_requests:
                t_next = next_arrival(now)
                if t_next <= duration:
                    push(events, (t_next, seq, ARRIVAL, 0, 0))
                    seq += 1
                else:
                    arrivals_open = False
            else:
                arrivals_open = False
        elif kind == RETRY:
            last_work = now
            dispatch(a, now)
        elif kind == SAMPLE:
            util_int += total_active * (now - util_last)
            util_last = now
            span = now - last_sample_t
            series.append(
                {
                    "t": round(now, 6),
                    "utilisation": round((util_int - last_sample_int) / span / total_slots, 6)
                    if span
                    else 0.0,
                    "in_flight": total_active,
                    "queued": sum(len(q) for q in queues) + (sum(len(q) for q in hq) if host_queue else 0),
                    "arrival_rps": round(arrivals_since / span, 6) if span else 0.0,
                    "offered_load": round(rate_at(now) / cap_rps, 6) if cap_rps else 0.0,
                    "k": k,
                    "penalised_pools": len(penalised_ops),
                    "devices_down": n_dev - sum(up),
                }
            )
            last_sample_t = now
            last_sample_int = util_int
            arrivals_since = 0
            if arrivals_open:
                push(events, (now + scn.sample_interval_s, seq, SAMPLE, 0, 0))
                seq += 1
        elif kind == CONTROL and controller is not None:
            util_int += total_active * (now - util_last)
            util_last = now
            span = now - last_control_t
            capacity = sum(cap[d] for d in range(n_dev) if eligible(d))
            # The router's gauge is in-flight over capacity; the mean over the interval is what a
            # well-sampled gauge gives, and is integer-scaled for the project's exact controller.
            mean_in_flight = round((util_int - last_control_int) / span) if span else total_active
            last_control_t = now
            last_control_int = util_int
            new_k, reason = controller.step(min(mean_in_flight, capacity), capacity)
            if new_k != k:
                k = new_k
                k_changes.append((round(now, 6), k, reason))
                reweight(now, "k")
            if arrivals_open:
                push(events, (now + controller.interval_s, seq, CONTROL, 0, 0))
                seq += 1
        elif kind == HOUR and reputation is not None:
            for d in range(n_dev):
                dev_hours[d].append((dev_hour_done[d], dev_hour_tokens[d], int(dev_hour_decode[d] * 1000)))
                dev_hour_done[d] = 0
                dev_hour_tokens[d] = 0
                dev_hour_decode[d] = 0.0
            hours_closed.append((hour_done, hour_fail))
            for op in range(fl.n_operators):
                win_done[op] += hour_done[op]
                win_fail[op] += hour_fail[op]
            if len(hours_closed) > rep_spec.window_hours:
                old_done, old_fail = hours_closed.popleft()
                for op in range(fl.n_operators):
                    win_done[op] -= old_done[op]
                    win_fail[op] -= old_fail[op]
            for d in range(n_dev):
                tput_score[d] = reputation.throughput(
                    fl.model_names[dev_model[d]], fl.dev_gpu[d], list(dev_hours[d])
                )
            changed = False
            if rep_spec.penalties:
                for op in range(fl.n_operators):
                    if reputation.low_completion_hour(hour_done[op], hour_fail[op]):
                        level, until = reputation.offend(op, now)
                        penalties.append(
                            {
                                "t": round(now, 6),
                                "pool": op,
                                "level": level,
                                "until": None if until is None else round(until, 6),
                                "completed": hour_done[op],
                                "failed": hour_fail[op],
                            }
                        )
                        if until is not None:
                            push(events, (until, seq, PENALTY_END, op, 0))
                            seq += 1
                        changed = True
            hour_done = [0] * fl.n_operators
            hour_fail = [0] * fl.n_operators
            if changed:
                pool_devices = {op: len(ids) for op, ids in enumerate(fl.op_devices)}
                new_out = reputation.enforced(now, pool_devices)
                if new_out != penalised_ops:
                    penalised_ops = new_out
                    reweight(now, "penalty")
            if arrivals_open:
                push(events, (now + rep_spec.hour_s, seq, HOUR, 0, 0))
                seq += 1
        elif kind == PENALTY_END and reputation is not None:
            pool_devices = {op: len(ids) for op, ids in enumerate(fl.op_devices)}
            new_out = reputation.enforced(now + 1e-9, pool_devices)
            if new_out != penalised_ops:
                penalised_ops = new_out
                reweight(now, "penalty end")
        elif kind == REPUTATION and reputation is not None:
            changed = False
            for op, ids in enumerate(fl.op_devices):
                mult, _ = reputation.completion_multiplier(
                    win_done[op] + hour_done[op], win_fail[op] + hour_fail[op]
                )
                for d in ids:
                    new = mult * tput_score[d]
                    if new != rep_weight[d]:
                        rep_weight[d] = new
                        changed = True
            if changed:
                reweight(now, "reputation")
            if arrivals_open:
                push(events, (now + rep_spec.update_interval_s, seq, REPUTATION, 0, 0))
                seq += 1
        elif kind == DOWN:
            take_down(a, now)
            if b:  # random failure: schedule the repair and the next failure
                repair = now + r_out.expovariate(1.0 / out_spec.mttr_s)
                push(events, (repair, seq, UP, a, 1))
                seq += 1
        elif kind == MEASURE:
            if len(marks) < 2:
                snapshot(min(now, last_work) if a and not arrivals_open else now)
        elif kind == UP:
            bring_up(a, now)
            if b and arrivals_open and out_spec.mtbf_s:
                push(events, (now + r_out.expovariate(1.0 / out_spec.mtbf_s), seq, DOWN, a, 1))
                seq += 1

    # The run ends with the last request's event, not with a periodic tick left in the heap.
    end = last_work
    while len(marks) < 2:  # a run shorter than its warm-up or window
        snapshot(end)
    busy_window = [b1 - b0 for b0, b1 in zip(marks[0][0], marks[1][0], strict=True)]
    up_window = [u1 - u0 for u0, u1 in zip(marks[0][1], marks[1][1], strict=True)]
    return RawResult(
        scenario=scn,
        fleet=fl,
        queue_delay=queue_delay,
        latency=latency,
        measured_arrivals=measured,
        rejected=rejected,
        failed=failed,
        retries_503=retries_503,
        dev_jobs=dev_jobs,
        dev_tokens=dev_tokens,
        dev_failures=dev_fail,
        dev_busy_slot_s=busy_window,
        dev_up_s=up_window,
        measured_span_s=max(0.0, min(end, duration) - warmup),
        series=series,
        penalties=penalties,
        k_changes=k_changes,
        share_exact=share_exact,
        intended_share=intended,
        events=n_events,
        sim_end_s=end,
        sources=adapters.sources(),
        reputation_final=[float(w) for w in rep_weight],
    )
