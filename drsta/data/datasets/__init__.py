"""Dataset readers: each `scan(root, split=0, ...)` lists a dataset's tracklets from its on-disk layout.

Readers only look at paths (no image or video is opened), so a scan is fast; ingest fills in frame counts and
sizes later. `READERS` maps the reader names used in configs and tracklet ids to the scan functions.
"""

from collections.abc import Callable

from drsta.data.datasets import duke, ilidsvid, mars, prid2011, videos
from drsta.data.tracklet import Tracklet

READERS: dict[str, Callable[..., list[Tracklet]]] = {
    "mars": mars.scan,
    "ilidsvid": ilidsvid.scan,
    "prid2011": prid2011.scan,
    "duke": duke.scan,
    "videos": videos.scan,
}
