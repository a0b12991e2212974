"""The operator HMI in a real headless browser (Playwright driving Debian's chromium): a station sends
frames, the inspection appears without a reload, the operator records a verdict, the store has it."""
import os
import shutil
from pathlib import Path

import grpc
import pytest

from edge.serve.station import make_requests
from edge.v1 import inspection_pb2 as pb
from edge.v1 import inspection_pb2_grpc as pb_grpc
from helpers.server import make_config, running_server

pytestmark = pytest.mark.slow


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: tests/setup.sh installs Debian's chromium package")
    return path


CANVAS_SUM = """() => { const c = document.getElementById('canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i+1] + d[i+2]; return [c.width, s]; }"""


def test_operator_sees_the_inspection_and_records_a_verdict(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    requests = make_requests(6, seed=1000, station="line-3")
    requests[1].explanations[:] = [pb.GRADCAM, pb.SENTENCE, pb.SENSORS, pb.GUIDED]   # the crack: sensors, guided map
    requests[1].cycle_budget_ms = 5000
    with running_server(make_config(tmp_path)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{server.hmi_port}/")
        expect(page.locator("#conn")).to_have_text("live", timeout=15000)
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            stub = pb_grpc.InspectionStub(ch)
            answers = [stub.Inspect(r, timeout=10) for r in requests[:3]]      # ok, crack, pit
        feed = page.locator("#feed li")
        expect(feed).to_have_count(3, timeout=15000)                           # pushed, no reload
        crack = page.locator(f'#feed li[data-id="{answers[1].inspection_id}"]')
        expect(crack.locator(".label")).to_have_text("CRACK")
        crack.click()
        expect(page.locator("#sentence")).to_have_text(answers[1].sentence)
        expect(page.locator("#timings")).to_contain_text("graph")
        # evidence by sensor: one bar per channel, largest first, as the answer gave them
        shares = sorted(((x.share, x.channel) for x in answers[1].sensors), reverse=True)
        bars = page.locator("#sensors .row")
        expect(bars).to_have_count(3)
        expect(bars.first).to_have_attribute("data-channel", shares[0][1])
        expect(bars.first).to_contain_text(f"{100 * shares[0][0]:.0f} %")
        page.locator("#channel").select_option("intensity")
        page.locator("#opacity").fill("70")
        # the overlay is drawn once both images have arrived: wait for that state, never for time
        canvas = page.locator("#canvas")
        expect(canvas).to_have_attribute("data-src", f"{answers[1].inspection_id}/intensity")
        expect(canvas).to_have_attribute("data-state", "drawn", timeout=15000)
        # the canvas holds the frame at its own resolution, not a blank
        drawn = page.evaluate(CANVAS_SUM)
        assert drawn[0] == 128 and drawn[1] > 0
        # the guided map the answer carried, over the same channel: another overlay of the same frame
        assert [a.method for a in answers[1].attributions] == ["guided hirescam"]
        expect(page.locator("#map-choice")).to_be_visible()
        page.locator("#map").select_option(label="guided hirescam")
        expect(canvas).to_have_attribute("data-src", f"{answers[1].inspection_id}/intensity/map0")
        expect(canvas).to_have_attribute("data-state", "drawn", timeout=15000)
        guided = page.evaluate(CANVAS_SUM)
        assert guided[0] == 128 and guided[1] > 0 and guided[1] != drawn[1]
        page.locator("#correct").select_option("scratch")
        page.locator("#disagree").click()
        expect(page.locator("#verdict-state")).to_have_text("recorded: disagree: scratch")
        expect(page.locator("#s-p99")).not_to_have_text("–", timeout=5000)
        shot = Path(os.environ.get("EDGE_XAI_SCREENSHOT", tmp_path / "hmi.png"))
        page.screenshot(path=str(shot))
        # a part without later maps offers no choice
        page.locator(f'#feed li[data-id="{answers[2].inspection_id}"]').click()
        expect(page.locator("#map-choice")).to_be_hidden()
        expect(canvas).to_have_attribute("data-src", f"{answers[2].inspection_id}/intensity")
        browser.close()
        assert shot.stat().st_size > 10_000
        verdict = server.node.store.verdicts()[-1]
        assert (verdict["inspection_id"], verdict["agree"], verdict["correct_class"]) == \
            (answers[1].inspection_id, 0, "scratch")


def test_study_mode_stores_the_condition_the_operator_saw(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    requests = make_requests(3, seed=1000, station="line-4")
    with running_server(make_config(tmp_path)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.hmi_port}/?study=1")
        expect(page.locator("#conn")).to_have_text("live", timeout=15000)
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            stub = pb_grpc.InspectionStub(ch)
            answers = [stub.Inspect(r, timeout=10) for r in requests]
        seen = {}
        for a in answers:
            page.locator(f'#feed li[data-id="{a.inspection_id}"]').click()
            expect(page.locator("#study")).to_contain_text("condition: ")
            cond = page.locator("#study").inner_text().split("condition: ")[1]
            sentence = page.locator("#sentence").inner_text()
            assert (sentence == a.sentence) == (cond == "map + sentence")
            page.locator("#agree").click()
            expect(page.locator("#verdict-state")).to_have_text("recorded: agree")
            seen[a.inspection_id] = cond
        browser.close()
        stored = {v["inspection_id"]: v["condition"] for v in server.node.store.verdicts()}
        assert stored == seen and set(seen.values()) <= {"prediction only", "map only", "map + sentence"}


def test_the_overlay_says_it_is_loading_until_its_images_arrive(tmp_path):
    """A slow image link: the canvas shows a loading placeholder (not a black square), then the overlay
    once the held-back images are released; an image that fails says so."""
    from playwright.sync_api import expect, sync_playwright

    requests = make_requests(2, seed=1000, station="line-5")
    held = []
    with running_server(make_config(tmp_path)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.route("**/api/inspections/*/channels/**", lambda route: held.append(route))   # hold every channel image
        page.goto(f"http://127.0.0.1:{server.hmi_port}/")
        expect(page.locator("#conn")).to_have_text("live", timeout=15000)
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            answer = pb_grpc.InspectionStub(ch).Inspect(requests[1], timeout=10)
        canvas = page.locator("#canvas")
        expect(canvas).to_have_attribute("data-src", f"{answer.inspection_id}/thermal", timeout=15000)
        expect(canvas).to_have_attribute("data-state", "loading")
        width, total = page.evaluate(CANVAS_SUM)
        assert total > 0                              # the placeholder is drawn, not a black square
        for _ in range(300):                          # the held request reaches this side (events run while waiting)
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the channel image was never requested"
        for route in held:
            route.continue_()
        held.clear()
        page.unroute("**/api/inspections/*/channels/**")
        page.route("**/api/inspections/*/channels/**", lambda route: route.fulfill(status=404, body="gone"))
        expect(canvas).to_have_attribute("data-state", "drawn", timeout=15000)
        page.locator("#channel").select_option("phase")                      # this one fails to load
        expect(canvas).to_have_attribute("data-state", "error", timeout=15000)
        browser.close()


def test_the_review_queue_shows_flagged_parts_and_why(tmp_path):
    """A flagged inspection (here written straight into the node's store, so the test does not depend on
    which frames the shipped model finds hard) is marked in the feed, kept by the review-queue filter,
    and its reasons are shown."""
    import dataclasses

    from playwright.sync_api import expect, sync_playwright

    requests = make_requests(3, seed=1000, station="line-3")
    with running_server(make_config(tmp_path)) as server, sync_playwright() as p:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            stub = pb_grpc.InspectionStub(ch)
            answers = [stub.Inspect(r, timeout=10) for r in requests[:2]]
        stored = server.node.store.get(answers[0].inspection_id)
        flagged = dataclasses.replace(stored, inspection_id=stored.inspection_id + "-f",
                                      review=["low confidence", "unlike the training data"])
        server.node.store.put_inspection(flagged)
        calm = [a.inspection_id for a in answers if not a.review.flagged]
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{server.hmi_port}/")
        row = page.locator(f'#feed li[data-id="{flagged.inspection_id}"]')
        expect(row.locator(".flag")).to_have_text("⚑ review", timeout=15000)
        page.locator("#queue").check()
        expect(row).to_be_visible()
        for i in calm:
            expect(page.locator(f'#feed li[data-id="{i}"]')).to_be_hidden()
        row.click()
        expect(page.locator("#review")).to_have_text("⚑ for review: low confidence, unlike the training data")
        browser.close()


def test_deferred_evidence_per_sensor_reaches_the_page(tmp_path):
    """SENSORS that does not fit the cycle budget is deferred; its bars and the sentence's clause arrive
    through the live feed without a reload (the page shows "computing…" until then, usually too briefly
    to catch here)."""
    from playwright.sync_api import expect, sync_playwright

    req = make_requests(2, seed=1000, station="line-5")[1]               # a crack
    req.explanations[:] = [pb.GRADCAM, pb.SENTENCE, pb.SENSORS]
    req.cycle_budget_ms = 5000
    with running_server(make_config(tmp_path)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{server.hmi_port}/")
        expect(page.locator("#conn")).to_have_text("live", timeout=15000)
        inspector = server.node.inspector
        measured = inspector.cost_ms[("sensors", "defect")]
        inspector.cost_ms[("sensors", "defect")] = 1e6                 # a slower machine: it cannot fit
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
                answer = pb_grpc.InspectionStub(ch).Inspect(req, timeout=10)
        finally:
            inspector.cost_ms[("sensors", "defect")] = measured
        assert list(answer.deferred) == [pb.SENSORS] and not answer.sensors
        page.locator(f'#feed li[data-id="{answer.inspection_id}"]').click()
        # the first render may already have the update; either way the bars must come
        expect(page.locator("#sensors .row")).to_have_count(3, timeout=15000)
        stored = server.node.store.get(answer.inspection_id)
        assert stored.complete and set(stored.sensors) == {"thermal", "phase", "intensity"}
        expect(page.locator("#sentence")).to_contain_text("Evidence by sensor: ")
        browser.close()
