"""DVC versioning of data/ with an S3 remote on a real SeaweedFS server: push, wipe, pull."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from lerenet.data.ingest import ingest
from tests.conftest import DVC, run_ok

pytestmark = pytest.mark.integration


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _git_dvc_repo(path: Path, prefix: str, endpoint: str) -> Path:
    """A git + DVC repository at ``path`` whose default remote is s3://lerenet-data/<prefix>."""
    path.mkdir()
    run_ok(["git", "init", "-q"], path)
    run_ok([*DVC, "init", "-q"], path)
    run_ok([*DVC, "remote", "add", "-d", "s3", f"s3://lerenet-data/{prefix}"], path)
    run_ok([*DVC, "remote", "modify", "s3", "endpointurl", endpoint], path)
    return path


def test_dvc_push_pull_round_trip(s3_server, synthetic_source: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = s3_server.env()
    run_ok(["git", "init", "-q"], repo, env)
    run_ok([*DVC, "init", "-q"], repo, env)
    run_ok([*DVC, "remote", "add", "-d", "storage", "s3://lerenet-data/dvcstore"], repo, env)
    run_ok([*DVC, "remote", "modify", "storage", "endpointurl", s3_server.endpoint], repo, env)
    ingest(str(synthetic_source), repo / "data", workers=1, show_progress=False)
    original = _digest(repo / "data")
    run_ok([*DVC, "add", "data"], repo, env)
    run_ok([*DVC, "push"], repo, env)
    objects = s3_server.client().list_objects_v2(Bucket="lerenet-data", Prefix="dvcstore/")
    assert objects.get("KeyCount", 0) > 40  # the files are in the bucket, not only locally
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    run_ok([*DVC, "pull"], repo, env)
    assert _digest(repo / "data") == original


def test_a_fresh_clone_restores_the_recorded_data_version(
    s3_env, synthetic_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment's worker starts in a fresh clone (data.dvc, no data/): the flows pull the
    recorded version before ingesting, so new data joins it instead of replacing it."""
    from lerenet.lineage.data_versions import restore_recorded_data

    origin = _git_dvc_repo(tmp_path / "origin", "restore", s3_env.endpoint)
    clone = tmp_path / "clone"
    assert not restore_recorded_data(Path("data"), origin)  # nothing recorded yet
    ingest(str(synthetic_source), origin / "data", workers=1, show_progress=False)
    run_ok([*DVC, "add", "data"], origin)
    run_ok([*DVC, "push"], origin)
    run_ok(["git", "add", "-A"], origin)
    run_ok(["git", "commit", "-qm", "data version"], origin)
    run_ok(["git", "clone", "-q", origin.as_uri(), str(clone)], tmp_path)
    assert not (clone / "data").exists()
    assert not restore_recorded_data(Path("data"), origin)  # the origin has its data
    assert restore_recorded_data(Path("data"), clone)
    assert _digest(clone / "data") == _digest(origin / "data")
    assert not restore_recorded_data(Path("data"), clone)  # once is enough
    # a version no remote has (the repository's own data.dvc in a fresh clone): start afresh
    other = tmp_path / "other"
    run_ok(["git", "clone", "-q", origin.as_uri(), str(other)], tmp_path)
    run_ok([*DVC, "remote", "modify", "s3", "url", "s3://lerenet-data/elsewhere"], other)
    assert not restore_recorded_data(Path("data"), other)
    assert not (other / "data" / "manifest.csv").exists()
    # a nightly retrain has no new source: that clone must stop there, saying why (it used to
    # fail two stages later with "no manifest", the restore task shown as Completed)
    from lerenet.lineage.data_versions import require_recorded_data

    require_recorded_data(Path("data"), clone)  # restored: nothing to say
    with pytest.raises(FileNotFoundError, match=r"default remote s3 \(s3://lerenet-data/else"):
        require_recorded_data(Path("data"), other)


def test_deploying_pushes_the_recorded_version_where_workers_restore_it(
    s3_env, synthetic_source: Path, tmp_path: Path
) -> None:
    """As the repository is set up: the default DVC remote is a folder beside the clone, and
    the committed ``s3`` remote has no endpoint (the worker's environment gives it). A fresh
    clone cannot restore from the folder; ``publish_recorded_data`` (``lerenet stack deploy``)
    pushes the branch's version to ``s3``, from which a clone restores it, and refuses in one
    sentence what no worker could restore."""
    from lerenet.lineage.data_versions import publish_recorded_data, restore_recorded_data

    origin = tmp_path / "origin"
    origin.mkdir()
    run_ok(["git", "init", "-q", "-b", "main"], origin)
    run_ok([*DVC, "init", "-q"], origin)
    run_ok([*DVC, "remote", "add", "-d", "local", "../dvc-storage"], origin)
    run_ok([*DVC, "remote", "add", "s3", "s3://lerenet-data/deploy"], origin)
    assert publish_recorded_data(Path("data"), origin, "s3", "HEAD") is None  # no commit yet
    ingest(str(synthetic_source), origin / "data", workers=1, show_progress=False)
    run_ok([*DVC, "add", "data"], origin)
    run_ok([*DVC, "push"], origin)  # to the folder only
    run_ok(["git", "add", "-A"], origin)
    run_ok(["git", "commit", "-qm", "data version"], origin)
    clone = tmp_path / "clones" / "first"
    run_ok(["git", "clone", "-q", origin.as_uri(), str(clone)], tmp_path)
    assert not restore_recorded_data(Path("data"), clone)  # ../dvc-storage is not beside it

    version = publish_recorded_data(Path("data"), origin, "s3", "main")
    assert version and version.startswith("dvc:") and version.endswith(".dir")
    assert version.removeprefix("dvc:") in (origin / "data.dvc").read_text()
    assert restore_recorded_data(Path("data"), clone, remote="s3")
    assert _digest(clone / "data") == _digest(origin / "data")

    # refused, each in one sentence saying how to fix it
    record = (origin / "data.dvc").read_text()
    (origin / "data.dvc").write_text(record.replace("nfiles:", "nfiles: 1\n  x:"))
    with pytest.raises(RuntimeError, match=r"data.dvc differs from the one on main.*commit it"):
        publish_recorded_data(Path("data"), origin, "s3", "main")
    (origin / "data.dvc").write_text(record)
    with pytest.raises(RuntimeError, match=r"no DVC remote 'shared'.*dvc remote add shared"):
        publish_recorded_data(Path("data"), origin, "shared", "main")
    # a fresh clone of a branch whose version was pushed nowhere it can reach
    unknown = record.replace(version.removeprefix("dvc:")[:8], "00000000")
    (origin / "data.dvc").write_text(unknown)
    run_ok(["git", "commit", "-qam", "a version nobody pushed"], origin)
    with pytest.raises(RuntimeError, match=r"neither this clone's DVC cache nor the remote 's3'"):
        publish_recorded_data(Path("data"), origin, "s3", "main")


def test_a_worker_clone_checks_out_the_version_it_is_given_not_its_own(
    s3_env, synthetic_source: Path, tmp_path: Path
) -> None:
    """The parent flow versions new data (pushed, not committed) and hands the training
    worker that version by value: the worker's clone records the older commit's version,
    and pulls the parent's from the S3 remote instead."""
    from lerenet.lineage.data_versions import checkout_data_version, version_data
    from lerenet.lineage.records import data_version

    origin = _git_dvc_repo(tmp_path / "origin", "worker", s3_env.endpoint)
    clone = tmp_path / "clone"
    one_class = tmp_path / "one_class"
    for kind in ("images", "masks"):
        shutil.copytree(synthetic_source / kind / "Synth_Stain", one_class / kind / "Synth_Stain")
    ingest(str(one_class), origin / "data", workers=1, show_progress=False)
    first = version_data(Path("data"), origin).data_version
    run_ok(["git", "add", "-A"], origin)
    run_ok(["git", "commit", "-qm", "data v1"], origin)
    ingest(str(synthetic_source), origin / "data", workers=1, show_progress=False)
    second = version_data(Path("data"), origin).data_version  # pushed, not committed
    assert second != first
    run_ok(["git", "clone", "-q", origin.as_uri(), str(clone)], tmp_path)
    assert data_version(clone / "data", clone / "data.dvc") == first  # what the clone records
    assert checkout_data_version(second, Path("data"), clone)
    assert _digest(clone / "data") == _digest(origin / "data")
    assert not checkout_data_version(second, Path("data"), clone)  # already there
    assert not checkout_data_version(second, Path("data"), origin)  # a shared directory
    with pytest.raises(ValueError, match="not a DVC hash"):
        checkout_data_version("manifest:abc", Path("data"), tmp_path / "elsewhere")


def test_wrong_credentials_are_rejected(s3_server) -> None:
    from botocore.exceptions import ClientError

    from lerenet.stack.seaweed import S3Credentials

    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        s3_server.client(S3Credentials(s3_server.credentials.access_key, "wrong")).list_buckets()
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        s3_server.client(S3Credentials("nobody", "whatever")).list_buckets()
    reader = s3_server.client(s3_server.readonly)
    with pytest.raises(ClientError, match="AccessDenied"):
        reader.put_object(Bucket="lerenet-data", Key="x", Body=b"x")


def test_backbone_weights_from_s3_uri(s3_env, tmp_path: Path) -> None:
    """Weights load from s3:// exactly as from a local file, with the same sha256 lineage."""
    import torch

    from lerenet.model.backbones.vgg16_bn import VGG16BN
    from lerenet.model.weights import load_backbone_weights
    from lerenet.services.storage import file_sha256

    source = VGG16BN()
    torch.nn.init.normal_(source.features[0].weight)
    path = tmp_path / "vgg.pth"
    torch.save(source.state_dict(), path)
    s3_env.client().upload_file(str(path), "lerenet-artifacts", "weights/vgg.pth")
    target = VGG16BN()
    info = load_backbone_weights(target, "s3://lerenet-artifacts/weights/vgg.pth")
    assert info.sha256 == file_sha256(path)
    assert torch.equal(target.features[0].weight, source.features[0].weight)
    from lerenet.model.weights import WeightsError

    with pytest.raises(WeightsError, match=f"missing.pth: no such object at {s3_env.endpoint}"):
        load_backbone_weights(VGG16BN(), "s3://lerenet-artifacts/weights/missing.pth")
    from lerenet.services.storage import cache_dir

    assert cache_dir().is_dir() and not list(cache_dir().rglob("*.part"))  # no partial file
