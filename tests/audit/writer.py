"""A service worker stand-in: appends hook records to a chain from several threads.

    python -m tests.audit.writer STORE TARGET RECORDS THREADS TAG [SIGNING_KEY]

STORE is sqlite or postgres, TARGET the file or URL; RECORDS 0 writes until killed.
Prints "ready" once its store is open, so a test can start all writers together.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from cds_service.audit.log import load_signer
from tests.audit.conftest import entry
from tests.audit.stores import StoreSpec


def main(argv: list[str]) -> None:
    store, target, records, threads, tag = argv[:5]
    spec = (
        StoreSpec("sqlite", sqlite_path=Path(target))
        if store == "sqlite"
        else StoreSpec("postgres", pg_url=target)
    )
    signer = load_signer(Path(argv[5])) if len(argv) > 5 else None
    log = spec.open(signer=signer, checkpoint_every=50)
    print("ready", flush=True)
    sys.stdin.readline()  # the go signal

    def work(t: int) -> None:
        n = 0
        while int(records) == 0 or n < int(records):
            n += 1
            name = f"{tag}-{t}-{n}"
            card = {"uuid": name, "summary": "10-year ASCVD risk 12.3%"}
            log.record(entry(n, patient=f"{tag}-{t}", hook_instance=name, cards=(card,)))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(int(threads))]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    log.close()


if __name__ == "__main__":
    main(sys.argv[1:])
