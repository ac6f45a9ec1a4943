"""Ports the harness hands to servers it starts."""

from polyrec_cli.devservers import free_port


def test_free_port_never_hands_out_a_port_twice():
    """The kernel gives a just-closed port out again (about one in 16 of 2,000 binds here), and two
    servers told the same port answer for each other: a worker's web port once served another
    worker's /metrics and failed a CI run."""
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
