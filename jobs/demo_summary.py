"""Job: print where the demo's outputs are and what they hold (``make demo`` ends with this).

python jobs/demo_summary.py [--conf conf/local.yml] [--set key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.demo_summary import main

if __name__ == "__main__":
    sys.exit(main())
