"""The child process of test_crash.py: rate one prediction in a loop, printing each
rating's id once the storage acknowledged it, until killed.

    python crash_writer.py URL PREDICTION_ID [--ack-before-commit]

The normal mode prints an id only after ``add_feedback`` returned, which is after its
COMMIT: the contract the service keeps before it answers 201. ``--ack-before-commit``
is the bug the test must catch: it prints the id after the INSERT but before the COMMIT,
then waits 30 s before committing, so a kill right after the print loses that row.
"""

from __future__ import annotations

import sys
import time

from taskloop.serve.records import FeedbackIn
from taskloop.serve.storage import make_engine, repo, session_factory, session_scope
from taskloop.serve.storage.tables import FeedbackRow


def main(argv: list[str]) -> None:
    url, prediction_id = argv[1], argv[2]
    unsafe = "--ack-before-commit" in argv[3:]
    factory = session_factory(make_engine(url))
    i = 0
    while True:
        i += 1
        item = FeedbackIn(prediction_id=prediction_id, kind="score", score=1 + i % 5)
        with session_scope(factory) as s:
            if unsafe:
                row = FeedbackRow(**item.model_dump(), rater="crash")
                s.add(row)
                s.flush()  # the id exists now, but only in this open transaction
                print(row.id, flush=True)
                time.sleep(30)
                continue  # session_scope commits
            rec = repo.add_feedback(s, item, rater="crash")
        print(rec.id, flush=True)


if __name__ == "__main__":
    main(sys.argv)
