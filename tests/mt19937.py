"""An MT19937 state-recovery predictor: the attack a Mersenne Twister nonce source falls to.

MT19937 (CPython's ``random.Random``) outputs its 624-word state through an invertible
tempering function, so 624 consecutive 32-bit outputs give the whole state back, and with it
every later output.  ``getrandbits(64)`` is two outputs, low word first: 312 nonces suffice.
The security tests use this to show that lispd's control-plane nonces are not such a source (the
predictor fails on them) while ``random.Random`` is (it succeeds on that, so the test can fail).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

N, M = 624, 397
_UPPER, _LOWER, _MATRIX = 0x80000000, 0x7FFFFFFF, 0x9908B0DF
_MASK32 = 0xFFFFFFFF


def _undo_right(value: int, shift: int) -> int:
    """Invert ``y ^= y >> shift``."""
    result = value
    for _ in range(32 // shift + 1):
        result = value ^ (result >> shift)
    return result & _MASK32


def _undo_left(value: int, shift: int, mask: int) -> int:
    """Invert ``y ^= (y << shift) & mask``."""
    result = value
    for _ in range(32 // shift + 1):
        result = value ^ ((result << shift) & mask)
    return result & _MASK32


def untemper(output: int) -> int:
    """The state word behind one 32-bit output."""
    y = _undo_right(output, 18)
    y = _undo_left(y, 15, 0xEFC60000)
    y = _undo_left(y, 7, 0x9D2C5680)
    return _undo_right(y, 11)


def temper(word: int) -> int:
    """The output of one state word."""
    y = word ^ (word >> 11)
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    return (y ^ (y >> 18)) & _MASK32


class Predictor:
    """Clones an MT19937 from 624 consecutive 32-bit outputs and predicts what follows."""

    def __init__(self, outputs: Iterable[int]) -> None:
        state = [untemper(o & _MASK32) for o in outputs]
        if len(state) != N:
            raise ValueError(f"needs exactly {N} outputs, got {len(state)}")
        self.state = state
        self.index = N

    def _twist(self) -> None:
        s = self.state
        for i in range(N):
            y = (s[i] & _UPPER) | (s[(i + 1) % N] & _LOWER)
            s[i] = s[(i + M) % N] ^ (y >> 1) ^ (_MATRIX if y & 1 else 0)
        self.index = 0

    def next32(self) -> int:
        """The next 32-bit output."""
        if self.index >= N:
            self._twist()
        word = self.state[self.index]
        self.index += 1
        return temper(word)

    def next64(self) -> int:
        """The next ``getrandbits(64)`` (low word first)."""
        low = self.next32()
        return (self.next32() << 32) | low


def words_of_64(nonces: Iterable[int]) -> Iterator[int]:
    """The 32-bit outputs behind ``getrandbits(64)`` values, in generation order."""
    for nonce in nonces:
        yield nonce & _MASK32
        yield nonce >> 32


def predicted_fraction(nonces: list[int]) -> float:
    """Train on the first 312 64-bit nonces, predict the rest: the fraction predicted exactly."""
    if len(nonces) <= N // 2:
        raise ValueError(f"needs more than {N // 2} nonces, got {len(nonces)}")
    predictor = Predictor(words_of_64(nonces[: N // 2]))
    rest = nonces[N // 2 :]
    hits = sum(predictor.next64() == nonce for nonce in rest)
    return hits / len(rest)
