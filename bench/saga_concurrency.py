"""Target (issue 5): with downstreams answering after 200 ms and WORKERS=1, 50 concurrent
creates finish in under 2 s in total. Sets the stand-ins' latency, fires the creates at
once on separate connections, and reports the wall time and the statuses."""
import argparse
import asyncio
import json
import os
import time
import urllib.request

ORDER = json.dumps({"customer_id": 7, "items": [
    {"product_id": 3, "sku": "SKU0003", "quantity": 2, "unit_price": "30.00"}]}).encode()


async def create(host, port):
    reader, writer = await asyncio.open_connection(host, port)
    auth = ("Authorization: Bearer " + os.environ.get("BENCH_TOKEN", "") + "\r\n").encode()
    writer.write(b"POST /v1/orders/create/ HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n" + auth +
                 b"Content-Type: application/json\r\nContent-Length: " + str(len(ORDER)).encode() +
                 b"\r\n\r\n" + ORDER)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return int(data.split(b" ", 2)[1])


async def fire(host, port, n):
    return await asyncio.gather(*(create(host, port) for _ in range(n)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--service", required=True)
    p.add_argument("--standin", required=True)
    p.add_argument("--creates", type=int, default=50)
    p.add_argument("--latency-ms", type=int, default=200)
    args = p.parse_args()
    behaviour = {step: {"delay_ms": args.latency_ms} for step in ("reserve", "charge", "ship", "notify")}
    req = urllib.request.Request(args.standin + "/_behaviour", data=json.dumps(behaviour).encode(), method="PUT")
    urllib.request.urlopen(req).read()
    host, port = args.service.split("//")[1].split(":")
    started = time.monotonic()
    statuses = asyncio.run(fire(host, int(port), args.creates))
    elapsed = time.monotonic() - started
    ok = statuses.count(201)
    verdict = "meets" if elapsed < 2 and ok == args.creates else "MISSES"
    print(f"saga: {args.creates} concurrent creates, downstream latency {args.latency_ms} ms, 1 worker: "
          f"{elapsed:.2f} s total, {ok} x 201 ({verdict} the < 2 s target)")


if __name__ == "__main__":
    main()
