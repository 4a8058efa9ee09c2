"""Stopping the service is quiet: a real local Ray Serve app started and stopped with `launch.stop`."""

from __future__ import annotations

import socket


def test_stopping_the_service_prints_no_expected_shutdown_failure(capfd):
    import ray
    from ray import serve

    from gr2.platform.ray_cluster import ensure_ray
    from gr2.serve import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    @serve.deployment
    def hello():
        return "hi"

    ensure_ray(num_cpus=2)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(hello.bind(), name="stop-test", route_prefix="/", blocking=False)
    launch.stop()
    out, err = capfd.readouterr()
    assert not ray.is_initialized()
    assert launch._EXPECTED_ON_STOP not in out + err, "the controller's own end is not reported as a failure"
    import ray._private.worker as ray_worker

    assert ray_worker.print_to_stdstream.__name__ == "print_to_stdstream", "Ray's printer is restored"
