"""The Faust table every role declares: Faust's own, except that it keeps the changelog
send of its last write.

A write to a Faust table (`table[key] = value`) changes the local store and hands the
changelog record to the producer's buffer; the send's future is dropped. The producer's
`flush` does not make up for it: it gives up on its buffer after 0.1 s without a send and
then only waits for what already reached the client library. So "flushed" is not
"on the broker", and the redo journal (epochflow.tables.journal) needs the latter: its
records must be on the broker before the step's table writes and messages go out.
`FaustStepIO` (epochflow.agents.step_io) takes `last_sent` after each write and waits for it.
"""

from __future__ import annotations

from typing import Any

import faust


class SentTable(faust.Table):
    last_sent: Any = None  # the FutureMessage of the last changelog record sent

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        self.last_sent = super().send_changelog(*args, **kwargs)
        return self.last_sent
