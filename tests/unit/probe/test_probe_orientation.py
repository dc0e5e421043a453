"""The probe keeps a flow's orientation (its initiator as the source) across the pieces that
nfstream's active timeout cuts it into, and forgets flows it no longer needs to."""

from __future__ import annotations

from streams.probe.meter import Initiators

CLIENT, SERVER = ("10.77.0.1", 40000), ("10.77.0.2", 443)


def piece(src: tuple[str, int], dst: tuple[str, int], fwd: int, rev: int) -> dict:
    return {"src_ip": src[0], "src_port": src[1], "dst_ip": dst[0], "dst_port": dst[1],
            "proto": 6, "bytes_fwd": fwd, "packets_fwd": 1, "bytes_rev": rev, "packets_rev": 2,
            "pkts": {"size": [100, 1500], "dir": [0, 1], "iat_us": [0, 10]}}  # fmt: skip


def test_later_pieces_keep_the_first_pieces_orientation() -> None:
    ini = Initiators()
    first = ini.orient(piece(CLIENT, SERVER, 500, 90_000), expiration_id=1)
    assert (first["src_ip"], first["bytes_rev"]) == ("10.77.0.1", 90_000)
    # the next piece starts with a server packet: nfstream's source is the server
    second = ini.orient(
        {**piece(SERVER, CLIENT, 120_000, 300), "retrans_fwd": 7, "retrans_rev": 0},
        expiration_id=1,
    )
    assert (second["src_ip"], second["src_port"], second["dst_port"]) == ("10.77.0.1", 40000, 443)
    assert (second["bytes_fwd"], second["bytes_rev"]) == (300, 120_000)
    assert (second["retrans_fwd"], second["retrans_rev"]) == (0, 7)  # the server resent 7
    assert second["pkts"]["dir"] == [1, 0]
    last = ini.orient(piece(SERVER, CLIENT, 5_000, 40), expiration_id=0)  # idle: the end
    assert last["src_ip"] == "10.77.0.1" and last["bytes_rev"] == 5_000
    assert not ini.open  # forgotten once ended


def test_unsplit_flows_are_left_alone_and_memory_is_bounded() -> None:
    ini = Initiators(cap=2)
    rec = ini.orient(piece(SERVER, CLIENT, 1, 2), expiration_id=0)
    assert rec["src_ip"] == "10.77.0.2" and not ini.open
    for port in range(5):
        ini.orient(piece(("10.0.0.9", 1000 + port), SERVER, 1, 1), expiration_id=1)
    assert len(ini.open) == 2


def test_lab_load_profile() -> None:
    import pytest

    from lab.load import parse_profile, rate_at

    phases = parse_profile("60:8,30:8-20")
    assert rate_at(phases, 10) == 8 and rate_at(phases, 75) == 14 and rate_at(phases, 90) is None
    with pytest.raises(ValueError, match="seconds:mbit"):
        parse_profile("0:8")
