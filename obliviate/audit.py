"""The audit: is the knowledge gone, or only hidden? (SPEC section 4)

Every registered attack (quantization, noise, relearning, probes) is run on each unlearned
model U and, as controls, on the target T and the oracle O. K(m) is forget accuracy (greedy
answer contains the fact) on the attack's probe items. Three scores per (U, attack A):

- retained            = K(A(U)) / K(T)                 (the quantization paper's measure)
- recovered           = (K(A(U)) - K(U)) / (K(T) - K(U))  (the share of the forgetting A undoes)
- recovered_vs_oracle = (K(A(U)) - K(A(O))) / (K(T) - K(O))  (knowledge present after the attack,
                        net of what A gives a model that never saw the data)

and one more, ours, that the table and the verdict use because it isolates the attack's effect
(`recovered_vs_oracle` also counts what U never forgot; `recovered` also counts what the attack
would teach any model, e.g. the oracle learning value priors during relearning):

- recovered_net       = ((K(A(U)) - K(U)) - max(0, K(A(O)) - K(O))) / (K(T) - K(U))

`recovered` and `recovered_vs_oracle` are clipped to [0, 1] (an attack that makes U forget more
scores 0; one that exceeds the target scores 1) and the raw values are kept beside them; they
are NaN when the denominator is ~0 (nothing was forgotten, so nothing can be recovered).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from obliviate import metrics as M
from obliviate.attacks import AttackContext, Attacked, AttackUnavailable, default_attacks, get_attack
from obliviate.data.collate import encode_prompt
from obliviate.data.task import DataError, ForgetTask, QAItem
from obliviate.evaluate import EvalConfig, answer_budget, fit_to_context, generate
from obliviate.progress import progress

EPS = 1e-9
HIDES_THRESHOLD = 0.25  # a method "hides" when some attack recovers at least this share


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x))) if math.isfinite(x) else float("nan")


def _ratio(num: float, den: float) -> float:
    return num / den if abs(den) > EPS else float("nan")


def recovery_scores(k_attacked: float, k_unlearned: float, k_target: float, k_oracle: float,
                    k_attacked_oracle: float) -> dict[str, float]:
    """The three recovery scores of SPEC section 4 (module docstring), clipped and raw."""
    recovered_raw = _ratio(k_attacked - k_unlearned, k_target - k_unlearned)
    vs_oracle_raw = _ratio(k_attacked - k_attacked_oracle, k_target - k_oracle)
    # only knowledge the attack *adds* to the oracle is discounted: an attack that costs the oracle
    # a few chance-level guesses must not count as recovery for U
    oracle_gain = max(0.0, k_attacked_oracle - k_oracle) if math.isfinite(k_attacked_oracle - k_oracle) else 0.0
    net_raw = _ratio(k_attacked - k_unlearned - oracle_gain, k_target - k_unlearned)
    return {"retained": _ratio(k_attacked, k_target),
            "recovered": _clip01(recovered_raw), "recovered_raw": recovered_raw,
            "recovered_vs_oracle": _clip01(vs_oracle_raw), "recovered_vs_oracle_raw": vs_oracle_raw,
            "recovered_net": _clip01(net_raw), "recovered_net_raw": net_raw}


@dataclass
class Probe:
    """Per-item forget correctness and retain accuracy of one (possibly attacked) model."""

    forget_index: list[int]  # indices into task.forget_eval
    forget_correct: np.ndarray
    retain_acc: float
    info: dict[str, Any]
    seconds: float = 0.0


def _correct(model, tokenizer, items: list[QAItem], prompts: list[list[int]] | None, cfg: EvalConfig,
             info: dict[str, Any] | None = None) -> np.ndarray:
    """Per-item knowledge K of the greedy answers; prompts cut to fit the context are counted in
    `info["prompts_truncated"]`."""
    prompts, max_new, cut = fit_to_context(model, tokenizer, prompts or [
        encode_prompt(tokenizer, it.question, cfg.prompt) for it in items], answer_budget(tokenizer, items, cfg))
    if info is not None and cut:
        info["prompts_truncated"] = info.get("prompts_truncated", 0) + cut
    gens = generate(model, tokenizer, prompts, max_new, cfg.batch_size)
    if cfg.knowledge == "rouge":
        return M.rouge_l_recall(gens, [it.answer for it in items])
    return M.answer_correct(gens, [it.answer for it in items], [it.keyword for it in items])


def probe(model, tokenizer, task: ForgetTask, attacked: Attacked | None, cfg: EvalConfig) -> Probe:
    """Forget correctness per item and retain accuracy, on the attack's items and prompts."""
    attacked = attacked or Attacked(model=model)
    position = {it: i for i, it in enumerate(task.forget_eval)}
    forget_items = attacked.forget_items or task.forget_eval
    missing = [it.question for it in forget_items if it not in position]
    if missing:
        raise ValueError(f"attack probed items that are not in forget_eval: {missing[:2]}")
    retain_items = attacked.retain_items or task.retain_eval
    info = dict(attacked.info)
    forget_correct = _correct(attacked.model, tokenizer, forget_items, attacked.forget_prompts, cfg, info)
    retain_correct = _correct(attacked.model, tokenizer, retain_items, attacked.retain_prompts, cfg, info)
    return Probe([position[it] for it in forget_items], forget_correct, float(retain_correct.mean()), info)


def _k(correct: np.ndarray, index: list[int]) -> float:
    return float(correct[index].mean()) if index else float("nan")


ERROR = "error: "  # how run_attacks records an attack that raised (audit.json keeps it under "unavailable")


def attack_error(e: BaseException) -> str:
    """How an attack that raised is recorded: "error: <type>: <first line of the message>"."""
    first = next((line for line in str(e).splitlines() if line.strip()), "")
    return ERROR + (f"{type(e).__name__}: {first.strip()}" if first else type(e).__name__)


def run_attacks(model, tokenizer, task: ForgetTask, attacks: list[str], cfg: EvalConfig, seed: int = 0,
                model_dir: Path | None = None, params: dict[str, dict] | None = None,
                desc: str = "auditing") -> dict[str, Probe | str]:
    """Each attack on one model: a `Probe`, or the reason it has none: "unavailable: ..." (the
    attack cannot run here) or "error: <type>: <first line>" (it raised; the audit goes on with
    the other attacks, and `--strict` turns any error into a non-zero exit at the end). A bad
    option (`DataError`) and Ctrl-C still stop the audit: they are the user's to fix."""
    out: dict[str, Probe | str] = {}
    with progress() as bar:
        t = bar.add_task(desc, total=len(attacks))
        for name in attacks:
            attack = get_attack(name)
            ctx = AttackContext(tokenizer=tokenizer, task=task, seed=seed, model_dir=model_dir,
                                params=dict((params or {}).get(name, {})), prompt=cfg.prompt,
                                knowledge=cfg.knowledge)
            t0 = time.perf_counter()
            try:
                attacked = attack.run(model, ctx)
                result = probe(model, tokenizer, task, attacked, cfg)
            except AttackUnavailable as e:
                out[name] = f"unavailable: {e}"
            except DataError:
                raise
            except Exception as e:  # noqa: BLE001 - one failing attack must not lose the others' results
                out[name] = attack_error(e)
            else:
                result.seconds = time.perf_counter() - t0
                out[name] = result
                if attacked.model is not model:
                    del attacked
            bar.advance(t)
    return out


def attack_errors(models: dict[str, dict[str, Any]]) -> list[str]:
    """"model/attack: error: ..." for every attack that raised, from the per-model audit rows
    ({model: {attack: row}}, as in audit.json's "models")."""
    return [f"{name}/{attack}: {row['unavailable']}" for name, rows in models.items() for attack, row in rows.items()
            if str(row.get("unavailable", "")).startswith(ERROR)]


def score_audit(task: ForgetTask, base: dict[str, Probe], attacked: dict[str, dict[str, Probe | str]],
                target: str = "target", oracle: str = "oracle") -> dict[str, dict[str, dict[str, Any]]]:
    """Scores per model and attack. `base[name]` is the unattacked probe of every model."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    t_correct = base[target].forget_correct
    o_correct = base[oracle].forget_correct if oracle in base else np.full_like(t_correct, np.nan)
    for name, per_attack in attacked.items():
        table[name] = {}
        for attack, res in per_attack.items():
            if isinstance(res, str):
                table[name][attack] = {"unavailable": res}
                continue
            idx = res.forget_index
            k_att = float(res.forget_correct.mean())
            o_att = attacked.get(oracle, {}).get(attack)
            k_att_o = float(o_att.forget_correct.mean()) if isinstance(o_att, Probe) else float("nan")
            row = {"forget_acc": k_att, "retain_acc": res.retain_acc,
                   "forget_acc_before": _k(base[name].forget_correct, idx),
                   "retain_acc_before": base[name].retain_acc, "n_probed": len(idx),
                   "seconds": round(res.seconds, 2), "info": res.info}
            row.update(recovery_scores(k_att, _k(base[name].forget_correct, idx), _k(t_correct, idx),
                                       _k(o_correct, idx), k_att_o))
            table[name][attack] = row
    return table


def verdict(rows: dict[str, dict[str, Any]], forget_acc: float, target_forget_acc: float,
            threshold: float = HIDES_THRESHOLD) -> str:
    """One line per method: "forgets", "hides: rtn4 recovers 62%", or "did not forget"."""
    if target_forget_acc - forget_acc < 0.5 * max(target_forget_acc, EPS):
        return "did not forget (forget accuracy fell by less than half)"
    scored = [(r.get("recovered_net", float("nan")), a) for a, r in rows.items() if "unavailable" not in r]
    scored = [(s, a) for s, a in scored if math.isfinite(s)]
    if not scored:
        return "forgets (no attack could be scored)"
    best, attack = max(scored)
    if best >= threshold:
        return f"hides: {attack} recovers {best:.0%}"
    return f"forgets (largest recovery {best:.0%}, {attack})"


def audit_models(models: dict[str, tuple[Any, Any, Path | None]], task: ForgetTask, attacks: list[str] | None = None,
                 cfg: EvalConfig | None = None, seed: int = 0, params: dict[str, dict] | None = None,
                 log=print) -> dict[str, Any]:
    """Audit every model in `models` ({name: (model, tokenizer, dir)}; must hold "target", and
    "oracle" when one exists): every attack on every model, scores, verdicts, weight diagnostics."""
    from obliviate.attacks.quantize import quantized_change_fraction, relative_weight_change

    cfg = cfg or EvalConfig()
    attacks = attacks or default_attacks()
    if "target" not in models:
        raise ValueError("the audit needs the 'target' model (before unlearning) as a control")
    base: dict[str, Probe] = {}
    attacked: dict[str, dict[str, Probe | str]] = {}
    for name, (model, tok, mdir) in models.items():
        base[name] = probe(model, tok, task, None, cfg)
        attacked[name] = run_attacks(model, tok, task, attacks, cfg, seed, mdir, params, desc=f"auditing {name}")
        log(f"audited {name}: " + ", ".join(
            f"{a} {r.forget_correct.mean():.2f}" if isinstance(r, Probe) else f"{a} n/a"
            for a, r in attacked[name].items()))
    table = score_audit(task, base, attacked)
    target_model = models["target"][0]
    verdicts, diagnostics = {}, {}
    for name, (model, _, _) in models.items():
        diagnostics[name] = {
            "changed_int4_codes": quantized_change_fraction(target_model, model, bits=4),
            "changed_int8_codes": quantized_change_fraction(target_model, model, bits=8),
            "relative_weight_change": relative_weight_change(target_model, model),
        }
        if name not in ("target", "oracle"):
            verdicts[name] = verdict(table[name], float(base[name].forget_correct.mean()),
                                     float(base["target"].forget_correct.mean()))
    return {"attacks": attacks, "knowledge": cfg.knowledge, "models": table, "verdicts": verdicts,
            "diagnostics": diagnostics,
            "baseline": {n: {"forget_acc": float(p.forget_correct.mean()), "retain_acc": p.retain_acc}
                         for n, p in base.items()}}

