"""Reporting the speed benchmark (:mod:`diffedit_lab.bench.speed`): the table of a report and the
environment it was measured in."""

from __future__ import annotations

import os
import platform

import torch

from .speed_run import GOALS, SEED


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"
    if unit == "ms":
        return f"{value:.3g} ms"
    if unit == "share":
        return f"{value:.1%}"
    return f"{value:.1f} MB"


def table(report: dict) -> str:
    names = {
        "a": "(a) one edit, identical settings",
        "a_eager": "    … with diffusers' UNet forward",
        "b": "(b) one edit, our defaults",
        "c": "(c) five targets, one image",
        "d": "(d) re-threshold a mask",
        "e": "(e) overhead outside the networks",
        "f": "(f) new target, warm session",
        "g": "(g) cold start, fresh process",
    }
    env = report["environment"]
    lines = [
        f"python -m diffedit_lab.bench speed {' '.join(report['argv'])}".rstrip(),
        f"torch {env['torch']}, diffusers {env['diffusers']}, {env['cpu']}, {env['threads']} thread(s); "
        f"CPU times, medians of {report['rounds']} round(s) after {report['warmup']} warm-up, diffusers and ours "
        "alternating; ratio = median of the rounds' ours/diffusers (range: the lowest and highest round; "
        "wall: the median on wall-clock times)",
    ]
    for label, m in report["models"].items():
        s = m["settings"]
        lines += ["", f"model {label}: {m['image_size'][0]}×{m['image_size'][1]} images, steps {s['steps']}, "
                      f"n {s['n']}, encoding_ratio {s.get('encoding_ratio', s.get('strength'))}, "
                      f"mask_noise {s.get('mask_noise', s.get('mask_strength'))}, "
                      f"guidance {s['guidance']}, seed {SEED}; UNet calls of ours through "
                      f"{'diffedit_lab.fast_unet' if m['fast_unet'] else 'diffusers'}"]
        lines.append(f"  {'scenario':<37} {'diffusers':>10} {'ours':>10} {'ratio':>7} {'range':>11} {'wall':>5}  "
                     f"{'goal':<11} holds")
        timed_keys = ("a", "a_eager", "b", "c", "f", "g")
        for key in ("a", "a_eager", "b", "c", "d", "e", "f", "g"):
            if key not in m["scenarios"]:
                continue
            r = m["scenarios"][key]
            ratio = "" if key == "e" else f"{r['ratio']:.3g}" if key == "d" else f"{r['ratio']:.3f}"
            wall = f"{r['ratio_wall']:.2f}" if key in timed_keys else ""
            spread = f"{r['ratio_range'][0]:.2f}–{r['ratio_range'][1]:.2f}" if key in timed_keys else ""
            goal = {"d": "", "a_eager": "", "e": f"≤ {GOALS['e']:.0%}"}.get(key, f"≤ {GOALS.get(key, 0):.2f}")
            holds = "" if key in ("d", "a_eager") else "yes" if r["holds"] else "NO"
            name = names[key] + (f" ({r['grid'][0]}×{r['grid'][1]})" if key == "d" and "grid" in r else "")
            lines.append(f"  {name:<37} {_fmt(r['diffusers'], r['unit']):>10} {_fmt(r['ours'], r['unit']):>10} "
                         f"{ratio:>7} {spread:>11} {wall:>5}  {goal:<11} {holds}")
            if key == "d":
                calls = f"{r['model_calls']} model calls"
                lines.append(f"  {'    … of 64×64 latents (' + calls + ')':<37} {'':>10} {_fmt(r['ours_64'], 'ms'):>10} "
                             f"{'':>7} {'':>11} {'':>5}  {'≤ ' + format(GOALS['d'], 'g') + ' ms':<11} "
                             f"{'yes' if r['holds'] else 'NO'}")
            if key == "b":
                e = m["scenarios"]["edit_s"]
                holds = ("yes" if e["holds"] else "NO") if e["recorded_settings"] else "— (not the recorded settings)"
                lines.append(f"  {'    … a full edit, in seconds':<37} {'':>10} {_fmt(e['ours'], 's'):>10} "
                             f"{'':>7} {'':>11} {'':>5}  {'≤ ' + format(GOALS['edit_s'], 'g') + ' s':<11} {holds}")
        if "memory" in m:
            mem = m["memory"]
            lines.append(f"  {'peak memory of one edit':<37} {_fmt(mem['diffusers_mb'], 'MB'):>10} "
                         f"{_fmt(mem['ours_mb'], 'MB'):>10} {mem['ratio']:>7.3f} {'':>11} {'':>5}  {'≤ 1.00':<11} "
                         f"{'yes' if mem['holds'] else 'NO'}")
        ident = m["scenarios"]["a"]["identical"]
        runs = m["scenarios"]["e"]["runs"]
        lines.append(
            f"  (a) identical: {ident['mask_cells_differing']} of {ident['mask_cells']} mask cells differ, inversion "
            f"max|Δ| {ident['inversion_max_abs']:.1e}, decoding with diffusers' blend max|Δ| "
            f"{ident['decoding_with_diffusers_blend_max_abs']:.1e} → {'identical' if ident['holds'] else 'NOT IDENTICAL'}"
            f" (our correct blend moves pixels by ≤ {ident['our_output_vs_diffusers_max_abs']:.3f})"
        )
        lines += _new_scenarios(m)
        lines.append("  UNet calls/rows per edit: " + ", ".join(
            f"{k.replace('_', ' ')} {v['unet_calls']}/{v['unet_rows']}" for k, v in runs.items()))
        if "memory" in m:
            mem = m["memory"]
            lines.append(f"  memory (ours: the larger of (a) {mem['ours_a_mb']:.1f} MB and (b) {mem['ours_b_mb']:.1f} MB): "
                         f"{mem['method']}, a fresh subprocess per sample")
    return "\n".join(lines)


def _new_scenarios(m: dict) -> list[str]:
    """The lines that explain (f) and (g): what they compare, what a new target computed, and
    where the time goes."""
    sc, lines = m["scenarios"], []
    if "f" in sc:
        f, p = sc["f"], sc["f"]["profile"]
        hits = [k for k in ("draws", "sources", "inversions") if all(u[k] == 0 for u in f["computed"])]
        lines.append(
            f"  (f) diffusers: generate_mask + invert + __call__ at the pipeline's defaults (50 steps, 10 draws, "
            f"strength 0.8, guidance 7.5); ours: EditSession.run with a target it has not seen — "
            f"{'each call computed only the new text, its mask and its decoding' if f['computes_only_the_new_target'] else 'NOT ONLY THE NEW TARGET: ' + str(f['computed'])}"
            f" (cache hits: {', '.join(hits) or 'none'})")
        lines.append(
            f"      one new target: {p['total_s']:.3g} s = UNet {p['unet_s']:.3g} s ({p['unet_calls']} calls, "
            f"{p['unet_rows']} rows: the mask's {p['mask_rows']} target rows + {p['decoding_steps']} decoding steps), "
            f"text encoder {p['text_encoder_s']:.2g} s, VAE decoder {p['vae_decoder_s']:.2g} s, "
            f"the rest {p['other_s']:.2g} s")
    if "g" in sc:
        g = sc["g"]
        ph = g["phases_s"]
        lines.append(
            f"  (g) a fresh `python -c` per sample ({g['threads']} thread), interpreter start to the edited image saved "
            f"(CPU time of the child): ours `import diffedit_lab` + load_components + edit() at the recorded settings, "
            f"loaded at {ph['ours']['load']:.2f} s + edit {ph['ours']['edit']:.2f} s + exit {ph['ours']['exit']:.2f} s; "
            f"diffusers' import + from_pretrained + edit at its defaults, loaded at {ph['diffusers']['load']:.2f} s + "
            f"edit {ph['diffusers']['edit']:.2f} s + exit {ph['diffusers']['exit']:.2f} s; wall medians "
            f"{g['ours_wall']:.2f} s and {g['diffusers_wall']:.2f} s")
    return lines


def environment(threads: int) -> dict:
    import diffusers

    return dict(torch=torch.__version__, diffusers=diffusers.__version__, python=platform.python_version(),
                cpu=f"{platform.machine()} CPU ×{os.cpu_count()}", threads=threads,
                load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None)
