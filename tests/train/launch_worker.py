"""A worker for tests/train/test_launch.py: says it is ready, then waits; SIGTERM or SIGUSR1 ends it
with the exit status given as its argument (as a preempted pretraining worker ends with 75)."""
import signal
import sys
import time


def main(argv):
    for s in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(s, lambda signum, frame: sys.exit(int(argv[0])))
    print("ready", flush=True)
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
