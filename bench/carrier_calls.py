"""Sendcloud return labels against a local stub: the connector's overhead per label.

Serves the Sendcloud calls SendcloudBackend makes (POST /returns, GET /returns/{id}, the label PDF
from /parcels/{id}/documents/label) from an http.server on 127.0.0.1, answering with the documented
payloads of tests/fixtures/carriers/sendcloud and a real ~30 KB PDF made once with fpdf2. Measures,
in the same run:

  (a) raw       the same three HTTP calls per label with a bare requests.Session (bodies prepared
                before the clock starts): what the stub and the HTTP stack cost;
  (b) connector SendcloudBackend.create_return_label (journal, request building, JSON mapping,
                PDF download and check) plus storing the PDF through connector.storage.LocalStorage.

Prints labels/s, mean and p95 ms per label for both, and the overhead (b) - (a) per label.

    .venv/bin/python bench/carrier_calls.py               # 500 labels
    .venv/bin/python bench/carrier_calls.py --labels 2000
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake Sendcloud lives with the tests

import requests  # noqa: E402

from connector.carriers.sendcloud import SendcloudBackend  # noqa: E402
from connector.returns.ports import Address, ParcelItem, ShipmentRequest  # noqa: E402
from connector.storage import LocalStorage  # noqa: E402
from tests.carriers.cases_sendcloud import PUBLIC_KEY, SECRET_KEY, SETTINGS, FakeSendcloud, make_pdf  # noqa: E402

WARM_UP = 20
PDF_FILLER_LINES = 370  # about 30 KB of uncompressed fpdf2 page content

SHOPPER = Address(name="Anna Schmidt", line1="Hauptstraße 12", postcode="80331", city="München", country="DE",
                  email="anna@example.com", phone="+49 89 123456")
WAREHOUSE = Address(name="Demo Shop Returns", line1="Lagerweg 5", line2="Halle 2", postcode="10115",
                    city="Berlin", country="DE")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def serve(fake_factory) -> tuple[ThreadingHTTPServer, FakeSendcloud]:
    """The stub on 127.0.0.1 (a free port), keep-alive HTTP/1.1, in a daemon thread."""
    holder: dict[str, FakeSendcloud] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One buffered write per answer and no Nagle: otherwise headers and body go out as two
        # segments and delayed ACKs add ~40 ms to every call, drowning what is measured.
        wbufsize = -1
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            url = f"http://{self.headers['Host']}{self.path}"
            status, content_type, content = holder["fake"].handle(self.command, url, self.headers, body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["fake"] = fake_factory(f"http://127.0.0.1:{server.server_address[1]}/api/v3")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, holder["fake"]


def shipment(n: int, prefix: str) -> ShipmentRequest:
    return ShipmentRequest(idempotency_key=f"{prefix}-{n}", reference=f"R-{10000 + n}", method="dropoff",
                           sender=SHOPPER, recipient=WAREHOUSE,
                           items=(ParcelItem("T-shirt, blue, M", 2, Decimal("19.90"), sku="TS-BL-M"),),
                           currency="EUR", weight_grams=800)


def run_raw(base: str, labels: int, prefix: str, body_of) -> list[float]:
    """(a): POST /returns, GET /returns/{id}, GET the label PDF, with a bare session."""
    session = requests.Session()
    session.auth = (PUBLIC_KEY, SECRET_KEY)
    bodies = [json.dumps(body_of(shipment(n, prefix))).encode() for n in range(labels)]
    times = []
    for body in bodies:
        t0 = time.perf_counter()
        created = session.post(f"{base}/returns", data=body, headers={"Content-Type": "application/json"},
                               timeout=(5, 30)).json()
        found = session.get(f"{base}/returns/{created['return_id']}", timeout=(5, 30)).json()
        pdf = session.get(found["label"]["label_printer"], headers={"Accept": "application/pdf"}, timeout=(5, 30)).content
        times.append((time.perf_counter() - t0) * 1000)
        assert pdf.startswith(b"%PDF")
    return times


def run_connector(backend: SendcloudBackend, storage: LocalStorage, labels: int, prefix: str) -> list[float]:
    """(b): create_return_label plus storing the PDF, per label."""
    requests_ = [shipment(n, prefix) for n in range(labels)]
    times = []
    for request in requests_:
        t0 = time.perf_counter()
        label = backend.create_return_label(request)
        storage.put(f"shop-1/labels/{request.reference}.pdf", label.pdf)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=500)
    args = parser.parse_args()

    pdf = make_pdf(filler=PDF_FILLER_LINES)
    server, fake = serve(lambda base: FakeSendcloud(base=base, pdf=pdf))
    base = fake.base
    work = Path(tempfile.mkdtemp(prefix="bench-carrier-"))
    backend = SendcloudBackend({**SETTINGS, "api_base": base, "data_dir": work / "data"})
    storage = LocalStorage(work / "files")
    try:
        run_raw(base, WARM_UP, "warm-raw", backend._return_body)
        run_connector(backend, storage, WARM_UP, "warm-connector")
        raw = run_raw(base, args.labels, "raw", backend._return_body)
        connector = run_connector(backend, storage, args.labels, "connector")
    finally:
        server.shutdown()

    def row(title: str, times: list[float]) -> str:
        mean = statistics.fmean(times)
        return (f"  {title:<34} {1000 / mean:8.1f} labels/s   mean {mean:7.3f} ms   p95 {percentile(times, 95):7.3f} ms")

    print(f"Sendcloud return labels against a local stub, {args.labels:,} labels, PDF {len(pdf) / 1024:.1f} KB "
          f"(3 HTTP calls per label)")
    print(row("(a) raw requests.Session", raw))
    print(row("(b) connector + LocalStorage.put", connector))
    overhead = statistics.fmean(connector) - statistics.fmean(raw)
    p95_overhead = percentile(connector, 95) - percentile(raw, 95)
    print(f"  overhead (b) - (a) per label      mean {overhead:7.3f} ms   p95 {p95_overhead:7.3f} ms")


if __name__ == "__main__":
    main()
