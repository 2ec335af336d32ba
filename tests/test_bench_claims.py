"""The paper's claims checked on results: each claim flips when its figures do."""

import copy

from diffedit_lab.bench import claims as cl

RATIOS = ("0.5", "0.8")


def point(success=0.5, psnr=30.0, kept=0.95, iou=float("nan"), se=0.05):
    return dict(edit_success=success, edit_success_se=se, background_psnr=psnr, untouched_kept=kept, mask_iou=iou)


def results():
    m = {
        "diffedit": {r: point(0.5, 33.0, 0.98, 0.4) for r in RATIOS},
        "sdedit": {r: point(0.5, 28.0, 0.8) for r in RATIOS},
        "encode_decode": {r: point(0.5, 30.0, 0.9) for r in RATIOS},
        "oracle": {r: point(0.52, 33.5, 0.99, 0.7) for r in RATIOS},
        "diffusers": {r: point(0.3, 27.0, 0.7, 0.4) for r in RATIOS},
    }
    ab = {
        "r": 0.8,
        "n": {"1": point(iou=0.30), "10": point(iou=0.40), "20": point(iou=0.41)},
        "threshold": {"0.25": point(iou=0.2), "0.5": point(iou=0.4), "0.75": point(iou=0.35)},
        "reference": {"caption": point(iou=0.4), "empty": point(iou=0.3)},
        "encoding": {"empty, w=1": point(0.5), "caption, w=1": point(0.5), "caption, w=7.5": point(0.2)},
    }
    return {"methods": m, "ablations": ab}


def verdicts(res):
    return {c.key: c.holds for c in cl.claims(res)}


def test_all_hold_on_figures_made_to_satisfy_them():
    v = verdicts(results())
    assert all(v.values()), v
    assert len(v) == 10


def test_each_claim_fails_when_its_figures_turn():
    cases = {
        "mask_keeps_background": lambda r: r["methods"]["sdedit"]["0.8"].update(background_psnr=34.0),
        "dominates_sdedit": lambda r: r["methods"]["sdedit"]["0.8"].update(edit_success=0.9, background_psnr=32.0),
        "encoding_beats_noising": lambda r: r["methods"]["encode_decode"]["0.5"].update(background_psnr=27.0),
        "inferred_mask_costs_no_edits": lambda r: r["methods"]["oracle"]["0.5"].update(edit_success=0.9),
        "caption_reference": lambda r: r["ablations"]["reference"]["empty"].update(mask_iou=0.45),
        "n_draws": lambda r: r["ablations"]["n"]["20"].update(mask_iou=0.45),
        "threshold_0.5": lambda r: r["ablations"]["threshold"]["0.75"].update(mask_iou=0.45),
        "unguided_encoding": lambda r: r["ablations"]["encoding"]["caption, w=7.5"].update(edit_success=0.45),
        "diffusers_as_is": lambda r: r["methods"]["diffusers"]["0.5"].update(untouched_kept=1.0),
    }
    for key, turn in cases.items():
        res = copy.deepcopy(results())
        turn(res)
        v = verdicts(res)
        assert v[key] is False, key
        assert sum(v.values()) >= len(v) - 3, (key, v)  # the others mostly still hold


def test_success_differences_within_noise_count_as_equal():
    res = results()
    res["methods"]["oracle"]["0.5"].update(edit_success=0.6)  # 10 points apart, 2 s.e. of the difference = 14
    assert verdicts(res)["inferred_mask_costs_no_edits"]
    res["methods"]["oracle"]["0.5"].update(edit_success=0.65)  # 15 apart
    assert not verdicts(res)["inferred_mask_costs_no_edits"]


def test_format_claims_lists_each_with_its_evidence():
    text = cl.format_claims(results())
    lines = text.splitlines()
    assert len(lines) == 20 and lines[0].startswith("holds") and "33.0" in lines[1]
    assert len(cl.format_claims(results(), evidence=False).splitlines()) == 10
