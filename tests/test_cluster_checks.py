"""What the cluster offers (scontrol, recorded on the mini cluster) and whether a request fits it:
partitions, reservations, hostlists, GPUs/CPUs/memory per node, node counts for multi-node ddp."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from slurm_fakes import GOLDEN

from aslhpc.slurm.cluster import (
    check_request,
    expand_hostlist,
    parse_gres,
    parse_hostlist,
    query_cluster,
    slurm_reachable,
)


def test_cluster_parsing_from_recorded_scontrol(fake_slurm: Path) -> None:
    info = query_cluster()
    assert info.partitions == {"reservation": "UP"}
    assert set(info.nodes) == {"n1", "n2"} and info.nodes["n1"].gpus("v100-sxm2") == 4
    assert info.nodes["n1"].cpus == 12 and info.nodes["n1"].memory_mb == 12000
    res = info.reservations["CSYE7374_GPU"]
    assert res.nodes == ("n1", "n2") and res.users == ("root",) and res.state == "ACTIVE"


def test_hostlist_and_gres_parsing() -> None:
    hosts = ["n1", "n2", "n3", "n5", "gpu01", "c08", "c09", "c10"]
    assert expand_hostlist("n[1-3,5],gpu01,c[08-10]") == hosts
    assert expand_hostlist("(null)") == []


MULTI = [("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
         ("n[08-10],gpu7", ["n08", "n09", "n10", "gpu7"]),
         ("a[1,3]b[9-10]c,x", ["a1b9c", "a1b10c", "a3b9c", "a3b10c", "x"]),
         ("n[1-2],m[001-002]", ["n1", "n2", "m001", "m002"])]


@pytest.mark.parametrize("text, hosts", MULTI)
def test_multi_bracket_hostlists_expand_every_group(text: str, hosts: list[str]) -> None:
    """Recorded output (no controller): every bracket group of a name, zero padding as written."""
    assert parse_hostlist(text) == hosts
    assert expand_hostlist(text) == hosts


def test_a_reservation_on_multi_bracket_nodes_holds_them(fake_slurm: Path) -> None:
    """Without the fix the reservation 'held no node of the partition' and submit refused."""
    from aslhpc.slurm.cluster import JobShape

    (fake_slurm / "res.txt").write_text(
        "ReservationName=R StartTime=now EndTime=later Nodes=rack[1-2]-n[01-02] NodeCnt=4 Users=root "
        "PartitionName=reservation State=ACTIVE\n")
    (fake_slurm / "node.txt").write_text("".join(
        f"NodeName={h} CPUTot=8 RealMemory=8000 Gres=gpu:v100-sxm2:4 Partitions=reservation State=IDLE\n"
        for h in ("rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02")))
    script = (fake_slurm / "scontrol").read_text()
    script = script.replace(f"{GOLDEN}/scontrol_reservation.txt", f"{fake_slurm}/res.txt")
    script = script.replace(f"{GOLDEN}/scontrol_node.txt", f"{fake_slurm}/node.txt")
    (fake_slurm / "scontrol").write_text(script)
    info = query_cluster()
    assert info.reservations["R"].nodes == ("rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02")
    problems, _ = check_request(info, partition="reservation", reservation="R", gpu_type="v100-sxm2",
                                jobs=[JobShape("g4", 4, 4, 1000)], user="root")
    assert problems == []


@pytest.mark.skipif(shutil.which("scontrol") is None or not slurm_reachable()[0],
                    reason="needs a SLURM controller (scripts/minislurm.sh up)")
@pytest.mark.parametrize("text, hosts", MULTI)
def test_slurm_itself_agrees_with_the_parser(text: str, hosts: list[str]) -> None:
    """The same hostlists through `scontrol show hostnames` (the mini cluster): the parser matches SLURM."""
    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    calls: list[list[str]] = []
    assert expand_hostlist(text, run) == hosts
    assert calls == [["scontrol", "show", "hostnames", text]]
    assert parse_gres("gpu:v100-sxm2:4(S:0-1),gpu:2") == {("gpu", "v100-sxm2"): 4, ("gpu", ""): 2}


def test_check_request_names_problem_and_fix(fake_slurm: Path) -> None:
    from aslhpc.slurm.cluster import JobShape

    info = query_cluster()
    ok = [JobShape("g4", 4, 4, 1000)]

    def problems(**kw: object) -> list[str]:
        args = {"partition": "reservation", "reservation": "CSYE7374_GPU", "gpu_type": "v100-sxm2",
                "jobs": ok, "user": "root"} | kw
        return check_request(info, **args)[0]  # type: ignore[arg-type]

    assert problems() == []
    assert problems(reservation="") == []
    [p] = problems(reservation="NOPE")
    assert "reservation 'NOPE' does not exist" in p and "CSYE7374_GPU" in p
    [p] = problems(partition="nopart")
    assert "partition 'nopart' does not exist" in p and "--partition" in p and "reservation" in p
    [p] = problems(jobs=[JobShape("g5", 5, 5, 1000)])
    assert "at most 4 gpu:v100-sxm2" in p and "from 1 to 4" in p
    [p] = problems(gpu_type="a100")
    assert "gpu:a100" in p and "v100-sxm2" in p
    [p] = problems(user="alice")
    assert "for users root, not alice" in p
    [p] = problems(jobs=[JobShape("g4", 4, 16, 1000)])
    assert "16 CPUs" in p and "--cpus-per-gpu to 3" in p
    [p] = problems(jobs=[JobShape("g1", 1, 1, 20000)])
    assert "cluster.mem 20000M" in p and "12000M" in p


def test_check_request_counts_nodes_and_gpus_per_node(fake_slurm: Path) -> None:
    from dataclasses import replace

    from aslhpc.slurm.cluster import JobShape

    info = query_cluster()

    def problems(jobs: list[JobShape], reservation: str = "CSYE7374_GPU") -> list[str]:
        return check_request(info, partition="reservation", reservation=reservation, gpu_type="v100-sxm2",
                             jobs=jobs, user="root")[0]

    assert problems([JobShape("g2-ddp", 1, 1, 1000, nodes=2), JobShape("g8-ddp", 4, 4, 1000, nodes=2)]) == []
    [p] = problems([JobShape("g3-ddp", 1, 1, 1000, nodes=3), JobShape("g3b-ddp", 1, 1, 1000, nodes=3)])
    assert p.startswith("cells g3-ddp, g3b-ddp: 3 GPUs at 1 per node need 3 nodes")
    assert "has 2 with 1 gpu:v100-sxm2" in p and "--gpus up to 2" in p
    [p] = problems([JobShape("g10-ddp", 5, 5, 1000, nodes=2)])
    assert "cluster.gpus_per_node=5" in p and "at most 4 gpu:v100-sxm2" in p
    assert "--gpus-per-node from 1 to 4" in p
    [p] = problems([JobShape("g4-ddp", 2, 16, 1000, nodes=2)])
    assert "2 GPUs on each of 2 nodes asks 16 CPUs per node" in p and "--cpus-per-gpu to 6" in p
    # a reservation narrows the nodes that count
    info.reservations["ONE"] = replace(info.reservations["CSYE7374_GPU"], name="ONE", nodes=("n1",))
    [p] = problems([JobShape("g2-ddp", 1, 1, 1000, nodes=2)], reservation="ONE")
    assert "need 2 nodes but partition 'reservation' in reservation 'ONE' has 1" in p


def test_submit_limits_read_max_array_size_and_the_associations_max_submit() -> None:
    """Chunk size for job arrays: MaxArraySize (scontrol show config) and MaxSubmitJobs (sacctmgr), smaller
    wins; neither known -> 0 (no limit). Outputs as recorded on the mini cluster."""
    import subprocess

    from aslhpc.slurm.cluster import SubmitLimits, query_submit_limits

    calls = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        calls.append(cmd)
        config = "MaxArraySize            = 1001\nMaxJobCount             = 10000\n"
        if cmd[0] == "scontrol":
            out = config
        elif "DefaultAccount" in cmd[-1]:
            out = "root\n"
        else:  # the user's default account without a limit, a second account limited to 3
            out = "root|\naslhpc-limited|3\n"
        return subprocess.CompletedProcess(cmd, 0, out, "")

    limits = query_submit_limits("aslhpc-limited", run, user="root")
    assert limits == SubmitLimits(1001, 3) and limits.chunk() == 3
    assert calls[1][-3:] == ["where", "user=root", "format=Account,MaxSubmit"]
    # jobs charged to the default account are not bound by another account's limit
    assert query_submit_limits("", run, user="root") == SubmitLimits(1001, 0)
    assert query_submit_limits("root", run, user="root").chunk() == 1001
    assert SubmitLimits(1001, 0).chunk() == 1001 and SubmitLimits().chunk() == 0
