from kr_lightning.report_privacy import mia_rows, strongest


def attack(auc, tpr, tpr_low=0.002, resolvable=False):
    return {
        "auc": auc,
        "auc_ci": [auc - 0.04, auc + 0.04],
        "tpr_at_fpr_0.01": tpr,
        "tpr_at_fpr_0.01_ci": [tpr / 2, tpr * 2],
        "tpr_at_fpr_0.001": tpr_low,
        "tpr_at_fpr_0.001_ci": [0.0, 0.0274],
        "tpr_at_fpr_0.001_resolvable": resolvable,
        "n_members": 400,
        "n_nonmembers": 380,
    }


def test_audit_table_gives_every_metric_with_its_interval():
    attacks = {"loss": attack(0.694, 0.010), "rmia_offline_1ref": attack(0.704, 0.113)}
    seeds = {
        "seed0": {
            "audits": {"mia": {"note": "mode a", "models": {"teacher": {"attacks": attacks}}}},
            "audit_sources": {"mia": "runs/x/seed0/mia/mia.json"},
        }
    }
    text = "\n".join(mia_rows(seeds))
    assert "| teacher | rmia_offline_1ref | 0.704 [0.664, 0.744] | 0.113 [0.057, 0.226] " in text
    assert "| 0.0020 [0.0000, 0.0274] (not resolvable) | 400 / 380 |" in text
    assert "Source: `runs/x/seed0/mia/mia.json`" in text
    assert strongest(attacks)[0] == "rmia_offline_1ref"


def test_an_audit_of_a_retrained_or_deleted_model_is_stale(tmp_path):
    """The report leaves out an audit whose checkpoint changed since (it would pair old attacks with new accuracy)."""
    from kr_lightning.artifacts import file_digest
    from kr_lightning.report_privacy import stale_models

    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"the audited weights")
    audit = {"deployed": {"student": {"ckpt": str(ckpt), "sha256": file_digest(ckpt)}}}
    assert stale_models(audit) == [] and stale_models({"models": {}}) == []  # audits before digests: unverifiable
    ckpt.write_bytes(b"re-trained weights")
    assert stale_models(audit) == [f"student ({ckpt})"]
    ckpt.unlink()
    assert stale_models(audit) == [f"student ({ckpt})"]
