"""Scenario files: a YAML list of timestamped operations replayed against a :class:`Ledger`.

A scenario is a mapping::

    description: what it shows
    units: INT            # amounts are whole INT/USDC decimal strings (default); "base" = base units
    settings: {delegator_unstake_delay_seconds: 86400, enforce_emission_schedule: false}
    mint: {alice: "2000", sam: "100"}           # genesis INT
    mint_usdc: {router: "50"}                   # genesis USDC
    points: {weights: {llama-3.1-8b: "1"}}      # off-chain points weights per model
    steps:
      - {at: 0, op: create_pool, pool: alice-pool, admin: alice, reward_commission_bps: 500}
      - {op: stake, owner: alice, pool: alice-pool, amount: "1000"}
      - {at: 86400, op: finalize_epoch, rewards: {alice-pool: "100"}}
      - {op: accrue_all}
      - {op: claim_unstake, owner: sam, pool: alice-pool, expect_error: PendingDelay}

``at`` (unix seconds) is optional and never goes backwards. A step with ``expect_error`` passes
only if the operation is refused with that protocol error; any other refusal fails the replay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpufleet.economics.distribution import PoolActivity, split_emission
from gpufleet.economics.emissions import expected_reward_emissions
from gpufleet.economics.errors import EconomicsError, InvalidInput
from gpufleet.economics.ledger import UNSET, Ledger, settings_from_mapping
from gpufleet.economics.points import PointsLedger, format_points
from gpufleet.economics.units import (
    INT_DECIMALS,
    USDC_DECIMALS,
    format_amount,
    parse_amount,
)


@dataclass
class StepResult:
    index: int
    at: int
    op: str
    args: dict[str, Any]
    ok: bool
    result: Any = None
    error: str | None = None
    error_message: str | None = None
    error_code: str | None = None
    expected_error: str | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool:
        if self.expected_error is None:
            return self.ok
        return not self.ok and self.expected_error in (self.error, self.error_code)


@dataclass
class Scenario:
    description: str
    base_units: bool
    settings: dict[str, Any]
    mint: dict[str, Any]
    mint_usdc: dict[str, Any]
    steps: list[dict[str, Any]]
    #: ``{weights: {model: "1.5"}, default: "1"}`` for the off-chain points ledger.
    points: dict[str, Any] = field(default_factory=dict)
    _points_ledger: PointsLedger | None = field(default=None, repr=False)

    @property
    def points_ledger(self) -> PointsLedger:
        if self._points_ledger is None:
            raise InvalidInput("points operations need a replay in progress")
        return self._points_ledger

    def tokens(self, value: Any, what: str) -> int:
        if self.base_units:
            return _base(value, what)
        return parse_amount(value, INT_DECIMALS, what=what)

    def usdc(self, value: Any, what: str) -> int:
        if self.base_units:
            return _base(value, what)
        return parse_amount(value, USDC_DECIMALS, what=what)

    def fmt_tokens(self, value: int) -> str:
        return str(value) if self.base_units else format_amount(value, INT_DECIMALS)

    def fmt_usdc(self, value: int) -> str:
        return str(value) if self.base_units else format_amount(value, USDC_DECIMALS)


def _base(value: Any, what: str) -> int:
    if isinstance(value, str) and value.replace("_", "").isdigit():
        return int(value.replace("_", ""))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer of base units, got {value!r}")
    return value


def load_scenario(path: str | Path) -> Scenario:
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data, source=str(path))


def parse_scenario(data: Any, *, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{source}: a scenario is a mapping with 'steps', got {type(data).__name__}")
    allowed = {"description", "units", "settings", "mint", "mint_usdc", "points", "steps"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput(f"{source}: unknown top-level key(s) {unknown}; allowed: {sorted(allowed)}")
    units = data.get("units", "INT")
    if units not in ("INT", "base"):
        raise InvalidInput(f"{source}: units must be 'INT' or 'base', got {units!r}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise InvalidInput(f"{source}: 'steps' must be a non-empty list")
    for i, step in enumerate(steps, 1):
        if not isinstance(step, Mapping) or "op" not in step:
            raise InvalidInput(f"{source}: step {i} must be a mapping with an 'op'")
        if step["op"] not in OPERATIONS:
            raise InvalidInput(f"{source}: step {i}: unknown op {step['op']!r}; known: {sorted(OPERATIONS)}")
    for key in ("settings", "mint", "mint_usdc", "points"):
        if not isinstance(data.get(key, {}), Mapping):
            raise InvalidInput(f"{source}: {key!r} must be a mapping")
    return Scenario(
        description=str(data.get("description", "")),
        base_units=units == "base",
        settings=dict(data.get("settings", {})),
        mint=dict(data.get("mint", {})),
        mint_usdc=dict(data.get("mint_usdc", {})),
        steps=[dict(s) for s in steps],
        points=dict(data.get("points", {})),
    )


# --- operations ---------------------------------------------------------------------------------
Op = Callable[[Ledger, Scenario, dict[str, Any]], Any]


def _req(args: Mapping[str, Any], key: str, op: str) -> Any:
    if key not in args:
        raise InvalidInput(f"{op} needs {key!r}")
    return args[key]


def _shares(ledger: Ledger, sc: Scenario, args: Mapping[str, Any], op: str) -> int:
    value = _req(args, "shares", op)
    if value == "all":
        return ledger.record(_req(args, "owner", op), _req(args, "pool", op)).shares
    return sc.tokens(value, "shares")


def _op_create_pool(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    pool = ledger.create_pool(
        _req(a, "pool", "create_pool"),
        _req(a, "admin", "create_pool"),
        reward_commission_rate_bps=a.get("reward_commission_bps", 0),
        usdc_commission_rate_bps=a.get("usdc_commission_bps", 0),
        allow_delegation=a.get("allow_delegation", True),
        auto_stake_fees=a.get("auto_stake_fees", False),
        address=a.get("address"),
    )
    return {"address": pool.address, "joinedAtEpoch": pool.joined_at_epoch}


def _op_update_pool(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    ledger.update_pool(
        _req(a, "pool", "update_pool"),
        new_reward_commission_rate_bps=a.get("reward_commission_bps", UNSET),
        new_usdc_commission_rate_bps=a.get("usdc_commission_bps", UNSET),
        allow_delegation=a.get("allow_delegation", UNSET),
        auto_stake_fees=a.get("auto_stake_fees", UNSET),
    )
    return None


def _op_stake(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    shares = ledger.stake(
        _req(a, "owner", "stake"), _req(a, "pool", "stake"), sc.tokens(_req(a, "amount", "stake"), "amount")
    )
    return {"sharesMinted": sc.fmt_tokens(shares)}


def _op_unstake(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    tokens = ledger.unstake(
        _req(a, "owner", "unstake"), _req(a, "pool", "unstake"), _shares(ledger, sc, a, "unstake")
    )
    return {"tokensUnstaking": sc.fmt_tokens(tokens)}


def _op_cancel(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    shares = ledger.cancel_unstake(_req(a, "owner", "cancel_unstake"), _req(a, "pool", "cancel_unstake"))
    return {"sharesMinted": sc.fmt_tokens(shares)}


def _op_claim(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    tokens = ledger.claim_unstake(_req(a, "owner", "claim_unstake"), _req(a, "pool", "claim_unstake"))
    return {"tokensClaimed": sc.fmt_tokens(tokens)}


def _op_claim_usdc(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    usdc = ledger.claim_usdc_earnings(_req(a, "owner", "claim_usdc"), _req(a, "pool", "claim_usdc"))
    return {"usdcClaimed": sc.fmt_usdc(usdc)}


def _op_withdraw(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    return {
        "commissionWithdrawn": sc.fmt_tokens(ledger.withdraw_reward_commission(_req(a, "pool", "withdraw")))
    }


def _op_withdraw_usdc(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    pool = _req(a, "pool", "withdraw_usdc_commission")
    return {"usdcCommissionWithdrawn": sc.fmt_usdc(ledger.withdraw_usdc_commission(pool))}


def _op_halt(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    ledger.set_halt(_req(a, "pool", "set_halt"), bool(a.get("halted", True)))
    return None


def _op_slash(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    pool = _req(a, "pool", "slash")
    value = _req(a, "shares", "slash")
    shares = (
        ledger.record(ledger.pool(pool).operator_staking_record, pool).shares
        if value == "all"
        else sc.tokens(value, "shares")
    )
    return {"tokensSlashed": sc.fmt_tokens(ledger.slash(pool, shares))}


def _op_close(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    return {"closedAtEpoch": ledger.close_pool(_req(a, "pool", "close_pool"))}


def _op_mark(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    ledger.mark_epoch_finalizing(int(a.get("epoch", ledger.completed_reward_epoch + 1)))
    return None


def _op_finalize(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    """Explicit ``rewards`` per pool, or ``work`` per pool split by stake-weighted completion."""
    epoch = ledger.completed_reward_epoch + 1
    rewards: dict[str, tuple[int, int]] = {}
    usdc = {k: sc.usdc(v, f"usdc of {k}") for k, v in dict(a.get("usdc", {})).items()}
    if "work" in a:
        if "rewards" in a:
            raise InvalidInput("finalize_epoch takes either 'rewards' or 'work', not both")
        work = dict(a["work"])
        emission = (
            sc.tokens(a["emission"], "emission") if "emission" in a else expected_reward_emissions(epoch)
        )
        due = ledger.pools_due_reward(epoch)
        activity = [
            PoolActivity(p.address, p.total_staked_amount, _base(work.get(p.name, 0), "work")) for p in due
        ]
        unknown = sorted(set(work) - {p.name for p in due})
        if unknown:
            raise InvalidInput(f"work given for pools that are not due epoch {epoch}: {unknown}")
        by_address = split_emission(emission, activity)
        rewards = {p.name: (by_address[p.address], usdc.get(p.name, 0)) for p in due}
    else:
        for name, value in dict(a.get("rewards", {})).items():
            if isinstance(value, Mapping):
                rewards[name] = (
                    sc.tokens(value.get("tokens", 0), f"tokens of {name}"),
                    sc.usdc(value.get("usdc", 0), f"usdc of {name}"),
                )
            else:
                rewards[name] = (sc.tokens(value, f"reward of {name}"), usdc.get(name, 0))
        for name, amount in usdc.items():
            rewards.setdefault(name, (0, amount))
    record = ledger.finalize_epoch(rewards, max_leaves_per_tree=a.get("max_leaves_per_tree"))
    return {
        "epoch": record.epoch,
        "totalRewards": sc.fmt_tokens(record.total_rewards),
        "totalUsdc": sc.fmt_usdc(record.total_usdc_payout),
        "merkleRoots": [r.hex() for r in record.merkle_roots],
        "leaves": {
            ledger._addresses[leaf.address]: [sc.fmt_tokens(leaf.token_amount), sc.fmt_usdc(leaf.usdc_amount)]
            for leaf in record.trees.all_leaves()
        },
    }


def _op_accrue(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    r = ledger.accrue_reward(_req(a, "pool", "accrue"), a.get("epoch"))
    return {
        "epoch": r.epoch,
        "delegatorRewards": sc.fmt_tokens(r.delegator_rewards),
        "commission": sc.fmt_tokens(r.operator_reward_commission),
        "transferred": sc.fmt_tokens(r.total_rewards_transferred),
    }


def _op_accrue_all(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    return {"accrued": [f"{r.pool}@{r.epoch}" for r in ledger.accrue_all()]}


def _op_bypass(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    ledger.accrue_reward_emergency_bypass(_req(a, "pool", "emergency_bypass"))
    return None


def _op_settings(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    changes = dict(_req(a, "set", "update_settings"))
    for key in ("min_operator_token_stake", "operator_pool_registration_fee"):
        if key in changes:
            changes[key] = sc.tokens(changes[key], key)
    ledger.update_settings(**changes)
    return None


def _op_mint(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    holder = _req(a, "holder", "mint")
    ledger.mint(holder, sc.tokens(a.get("amount", 0), "amount"), sc.usdc(a.get("usdc", 0), "usdc"))
    return None


def _op_advance(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    return None


def _op_record_work(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    ev = sc.points_ledger.record_work(
        _req(a, "operator", "record_work"),
        _req(a, "model", "record_work"),
        _base(_req(a, "tokens", "record_work"), "tokens"),
        ledger.now,
    )
    return {"points": format_points(ev.micro_points)}


def _op_award_bonus(ledger: Ledger, sc: Scenario, a: dict[str, Any]) -> Any:
    ev = sc.points_ledger.award_bonus(
        _req(a, "operator", "award_bonus"),
        _req(a, "points", "award_bonus"),
        str(_req(a, "reason", "award_bonus")),
        ledger.now,
    )
    return {"points": format_points(ev.micro_points)}


OPERATIONS: dict[str, Op] = {
    "create_pool": _op_create_pool,
    "update_pool": _op_update_pool,
    "stake": _op_stake,
    "unstake": _op_unstake,
    "cancel_unstake": _op_cancel,
    "claim_unstake": _op_claim,
    "claim_usdc": _op_claim_usdc,
    "withdraw_commission": _op_withdraw,
    "withdraw_usdc_commission": _op_withdraw_usdc,
    "set_halt": _op_halt,
    "slash": _op_slash,
    "close_pool": _op_close,
    "mark_finalizing": _op_mark,
    "finalize_epoch": _op_finalize,
    "accrue": _op_accrue,
    "accrue_all": _op_accrue_all,
    "emergency_bypass": _op_bypass,
    "update_settings": _op_settings,
    "mint": _op_mint,
    "advance": _op_advance,
    "record_work": _op_record_work,
    "award_bonus": _op_award_bonus,
}


def new_ledger(sc: Scenario) -> Ledger:
    settings = dict(sc.settings)
    for key in ("min_operator_token_stake", "operator_pool_registration_fee"):
        if key in settings:
            settings[key] = sc.tokens(settings[key], key)
    ledger = Ledger(settings_from_mapping(settings))
    for holder, amount in sc.mint.items():
        ledger.mint(str(holder), tokens=sc.tokens(amount, f"mint for {holder}"))
    for holder, amount in sc.mint_usdc.items():
        ledger.mint(str(holder), usdc=sc.usdc(amount, f"USDC mint for {holder}"))
    return ledger


def replay(sc: Scenario) -> tuple[Ledger, list[StepResult]]:
    """Apply every step; refusals are recorded, not raised (malformed steps do raise)."""
    ledger = new_ledger(sc)
    weights = sc.points.get("weights", {})
    if not isinstance(weights, Mapping):
        raise InvalidInput("points.weights must map model names to decimal weights")
    sc._points_ledger = PointsLedger.from_weights(dict(weights), sc.points.get("default"))
    results: list[StepResult] = []
    for i, step in enumerate(sc.steps, 1):
        args = {k: v for k, v in step.items() if k not in ("op", "at", "expect_error", "note")}
        at = step.get("at")
        if at is not None:
            ledger.advance_to(_base(at, f"step {i} 'at'"))
        res = StepResult(i, ledger.now, step["op"], args, ok=True, expected_error=step.get("expect_error"))
        try:
            res.result = OPERATIONS[step["op"]](ledger, sc, args)
        except InvalidInput as exc:
            raise InvalidInput(f"step {i} ({step['op']}): {exc.detail or exc.message}") from None
        except EconomicsError as exc:
            res.ok = False
            res.error = type(exc).__name__
            res.error_code = exc.code
            res.error_message = exc.message
        res.snapshot = ledger.snapshot()
        if sc.points_ledger.events:
            res.snapshot["points"] = {
                op: format_points(total) for op, total in sc.points_ledger.leaderboard()
            }
        results.append(res)
    return ledger, results


# --- rendering ------------------------------------------------------------------------------------
def render_text(sc: Scenario, results: list[StepResult]) -> str:
    """Human-readable replay: each step, its outcome, then balances, shares and prices."""
    lines: list[str] = []
    if sc.description:
        lines.append(f"# {sc.description}")
    unit = "base units" if sc.base_units else "INT / USDC"
    lines.append(f"# amounts in {unit}")
    for r in results:
        args = " ".join(f"{k}={_short(v)}" for k, v in r.args.items())
        if r.ok:
            outcome = "ok" + (f" {_short(r.result)}" if r.result else "")
        else:
            outcome = f"REFUSED {r.error}: {r.error_message}"
        mark = (
            ""
            if r.as_expected
            else "   <-- UNEXPECTED" + (f" (expected {r.expected_error})" if r.expected_error else "")
        )
        if r.expected_error and r.as_expected:
            mark = "   (expected)"
        lines.append(
            f"[{r.index:>2}] t={r.at} epoch={r.snapshot['completedRewardEpoch']} {r.op} {args}".rstrip()
        )
        lines.append(f"     -> {outcome}{mark}")
        for name, p in r.snapshot["pools"].items():
            lines.append(
                f"     pool {name}: staked {sc.fmt_tokens(p['totalStaked'])}"
                f" shares {sc.fmt_tokens(p['totalShares'])}"
                f" unstaking {sc.fmt_tokens(p['totalUnstaking'])} price {p['sharePrice']}"
                + (f" commission {sc.fmt_tokens(p['commissionVault'])}" if p["commissionVault"] else "")
                + (" HALTED" if p["haltedAt"] is not None else "")
                + (f" closed@{p['closedAtEpoch']}" if p["closedAtEpoch"] is not None else "")
            )
            for owner, h in p["holders"].items():
                extra = (
                    f" unstaking {sc.fmt_tokens(h['unstaking'])} until {h['unstakeAt']}"
                    if h["unstaking"]
                    else ""
                )
                lines.append(
                    f"       {owner}: shares {sc.fmt_tokens(h['shares'])} "
                    f"redeemable {sc.fmt_tokens(h['redeemable'])}{extra}"
                )
        wallets = ", ".join(
            f"{h} {sc.fmt_tokens(w['INT'])}" + (f"+{sc.fmt_usdc(w['USDC'])} USDC" if w["USDC"] else "")
            for h, w in r.snapshot["wallets"].items()
        )
        lines.append(f"     wallets: {wallets}")
        if "points" in r.snapshot:
            lines.append(
                "     points: " + ", ".join(f"{op} {pts}" for op, pts in r.snapshot["points"].items())
            )
    failures = [r for r in results if not r.as_expected]
    lines.append(f"# {len(results)} steps, {len(failures)} unexpected")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"
    return str(value)


def render_json(sc: Scenario, results: list[StepResult]) -> dict[str, Any]:
    return {
        "description": sc.description,
        "units": "base" if sc.base_units else "INT",
        "steps": [
            {
                "index": r.index,
                "at": r.at,
                "op": r.op,
                "args": r.args,
                "ok": r.ok,
                "result": r.result,
                "error": r.error,
                "errorMessage": r.error_message,
                "expectedError": r.expected_error,
                "asExpected": r.as_expected,
                "state": r.snapshot,
            }
            for r in results
        ],
        "unexpected": sum(1 for r in results if not r.as_expected),
    }
