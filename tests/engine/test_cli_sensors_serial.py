"""Done-when: `exposure sensors stream serial://…?format=csv --count 40 --json` against a device on
a pty that is unplugged and plugged back again and again prints exactly the samples the device
sent while connected, rejects junk lines, and reopens the port each time it comes back."""

from __future__ import annotations

import time

from tests.engine.sensors_cli_helpers import StreamChild

JUNK = ["hello", "72;833", "", "\x1b[2J", "NaN,800", "999,300", "72,12"]
WHY = ["not-a-number", "not-a-number", "empty", "binary", "not-a-number", "impossible-bpm", "impossible-rr"]



def test_stream_csv_across_unplugs(pty_device, capsys):
    child = StreamChild("sensors", "stream", f"serial://{pty_device.link}?baud=115200&format=csv", "--count", "40",
                        "--json")
    sent: list[tuple[float, list[float]]] = []
    comebacks = []
    t_plug = 0.0
    try:
        i = 0
        for cycle in range(5):
            child.wait_for(lambda c=cycle: child.count("connected") > c)
            if cycle:
                comebacks.append(time.monotonic() - t_plug)
            for _ in range(8):
                if len(sent) >= 40:
                    break
                bpm, rr = 60 + (i * 5) % 70, [round(60000 / (60 + (i * 5) % 70) + k * 3.5, 1) for k in range(i % 3)]
                pty_device.line(",".join([f"{bpm}", *(f"{r}" for r in rr)]))
                sent.append((float(bpm), rr))
                pty_device.line(JUNK[i % len(JUNK)])
                i += 1
            if len(sent) >= 40:
                break
            n = len(sent)
            # everything sent has been read (samples and rejections) before the cable is pulled
            child.wait_for(lambda n=n: len(child.samples) >= n and child.count("rejected") >= n)
            pty_device.unplug()
            child.wait_for(lambda c=cycle: child.count("disconnected") > c)
            time.sleep(0.6)  # unplugged for a while: reopening fails meanwhile
            pty_device.plug()
            t_plug = time.monotonic()
        rc = child.finish(60)
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
            child.finish(10)
    assert rc == 0, child.other
    assert [(s["bpm"], s["rr_ms"]) for s in child.samples] == sent[:40]
    assert all(s["contact"] is None and 0 <= s["quality"] <= 1 for s in child.samples)
    k = child.kinds()
    assert k.count("connected") == 5 and k.count("disconnected") == 4
    assert k.count("connect_failed") >= 4  # the port was absent at least once per unplug
    rej = [e["reason"] for e in child.events if e["event"] == "rejected"]
    # each junk line sent before the 40th sample was rejected, with its reason, in order
    assert rej == [WHY[j % len(WHY)] for j in range(39)]
    delays = [e["delay"] for e in child.events if e["event"] == "reconnecting"]
    assert max(delays) <= 1.0  # the backoff cap: the port is retried at least once a second
    with capsys.disabled():
        print(f"\n[serial] reopened {max(comebacks):.2f} s at most after a replug ({len(comebacks)} replugs)")
