"""A consumer written the way PgQ's own Python library (PyPI ``pgq``) intends:
a ``pgq.Consumer`` subclass run by skytools' DBScript main loop. It records every
event it is handed, one JSON line per event, to the config's ``out_file``; an
event whose data is ``retry-once`` is tagged for retry the first time it comes
(ev_retry NULL), so the library's own retry path (pgq.event_retry) runs too.

    python pgq_recorder.py recorder.ini [--register | --unregister]
"""

from __future__ import annotations

import json
import sys

import pgq


class Recorder(pgq.Consumer):
    def reload(self) -> None:
        super().reload()
        self.out_file = self.cf.getfile("out_file")

    def process_event(self, db: object, ev: pgq.Event) -> None:
        record = {
            "ev_id": ev.ev_id,
            "ev_retry": ev.ev_retry,
            "ev_type": ev.ev_type,
            "ev_data": ev.ev_data,
            "ev_extra1": ev.ev_extra1,
            "batch_id": self.batch_info["batch_id"] if self.batch_info else None,
        }
        if ev.ev_data == "retry-once" and ev.ev_retry is None:
            ev.tag_retry(0)
            record["tagged"] = "retry"
        else:
            ev.tag_done()
        with open(self.out_file, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    Recorder("recorder", "db", sys.argv[1:]).start()
