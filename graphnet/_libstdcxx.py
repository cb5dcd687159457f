"""The libstdc++ container behaviour Caffe2's C++ memonger depended on.

Caffe2 numbered its shared blobs (`__m<k>_shared`) while iterating a
`std::unordered_map<std::string, std::string>`, and kept free blobs in a
vector ordered with `std::push_heap`/`std::pop_heap`. Reproducing Caffe2's
output name for name therefore needs libstdc++'s string hash
(`std::_Hash_bytes`, seed 0xc70f6907), its prime bucket policy and node
order, and its heap algorithms. Pure Python; imports nothing from graphnet.
"""

import bisect

__all__ = ["hash_bytes", "HashOrder", "push_heap", "pop_heap"]

_MASK = (1 << 64) - 1
_MUL = (0xc6a4a793 << 32) + 0x5bd1e995
_SEED = 0xc70f6907


def _shift_mix(v):
    return v ^ (v >> 47)


def hash_bytes(data, seed=_SEED):
    """std::hash<std::string> of 64-bit libstdc++ (a MurmurHash64A variant)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    length = len(data)
    aligned = length & ~7
    h = (seed ^ (length * _MUL)) & _MASK
    for p in range(0, aligned, 8):
        word = int.from_bytes(data[p:p + 8], "little")
        word = (_shift_mix((word * _MUL) & _MASK) * _MUL) & _MASK
        h = ((h ^ word) * _MUL) & _MASK
    if length & 7:
        h = ((h ^ int.from_bytes(data[aligned:], "little")) * _MUL) & _MASK
    h = (_shift_mix(h) * _MUL) & _MASK
    return _shift_mix(h)


# libstdc++'s __prime_list (hashtable-aux.cc), enough for any net memonger sees;
# beyond it the policy keeps doubling to the next prime, computed on demand.
_PRIMES = [
    2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79,
    83, 89, 97, 103, 109, 113, 127, 137, 139, 149, 157, 167, 179, 193, 199, 211, 227,
    241, 257, 277, 293, 313, 337, 359, 383, 409, 439, 467, 503, 541, 577, 619, 661, 709,
    761, 823, 887, 953, 1031, 1109, 1193, 1289, 1381, 1493, 1613, 1741, 1879, 2029,
    2179, 2357, 2549, 2753, 2971, 3209, 3469, 3739, 4027, 4349, 4703, 5087, 5503, 5953,
    6427, 6949, 7517, 8123, 8783, 9497, 10273, 11113, 12011, 12983, 14033, 15173,
    16411, 17749, 19183, 20753, 22447, 24281, 26267, 28411, 30727, 33223, 35933,
    38873, 42043, 45481, 49201, 53201, 57557, 62233, 67307, 72817, 78779, 85229, 92203,
    99733, 107897, 116731, 126271, 136607, 147793, 159871, 172933, 187091, 202409,
    218971, 236897, 256279, 277261, 299951, 324503, 351061, 379787, 410857, 444487,
    480881, 520241, 562841, 608903, 658753, 712697, 771049, 834181, 902483, 976369,
    1056323, 1142821, 1236397, 1337629, 1447153, 1565659, 1693859, 1832561, 1982627,
    2144977, 2320627, 2510653, 2716249, 2938679, 3179303, 3439651, 3721303, 4026031,
    4355707, 4712381, 5098259, 5515729, 5967347, 6456007, 6984629, 7556579, 8175383,
    8844859, 9569143, 10352717, 11200489, 12117689, 13109983, 14183539, 15345007,
    16601593, 17961079, 19431899, 21023161, 22744717, 24607243, 26622317, 28802401,
    31160981, 33712729, 36473443, 39460231, 42691603, 46187573, 49969847, 54061849,
    58488943, 63278561, 68460391, 74066549, 80131819, 86693767, 93793069, 101473717,
    109783337, 118773397, 128499677, 139022417, 150406843, 162723577, 176048909,
    190465427, 206062531, 222936881, 241193053, 260944219, 282312799, 305431229,
    330442829, 357502601, 386778277, 418451333, 452718089, 489790921, 529899637,
    573292817, 620239453, 671030513, 725980837, 785430967, 849749479, 919334987,
    994618837, 1076067617, 1164186217, 1259520799, 1362662261, 1474249943,
    1594975441, 1725587117, 1866894511, 2019773507, 2185171673, 2364114217,
    2557710269, 2767159799, 2993761039, 3238918481, 3504151727, 3791104843,
    4101556399, 4294967291,
]
_FAST_BKT = [2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13]


class _RehashPolicy(object):
    """_Prime_rehash_policy with max_load_factor 1 and growth factor 2."""

    def __init__(self):
        self.next_resize = 0

    def next_bkt(self, n):
        if n < len(_FAST_BKT):
            if n == 0:
                return 1
            self.next_resize = _FAST_BKT[n]
            return _FAST_BKT[n]
        # lower_bound over __prime_list + 6 .. last prime (exclusive)
        pos = bisect.bisect_left(_PRIMES, n, 6, len(_PRIMES) - 1)
        if pos == len(_PRIMES) - 1:
            self.next_resize = (1 << 64) - 1
        else:
            self.next_resize = _PRIMES[pos]
        return _PRIMES[pos]

    def need_rehash(self, n_bkt, n_elt, n_ins):
        if n_elt + n_ins > self.next_resize:
            min_bkts = float(max(n_elt + n_ins, 0 if self.next_resize else 11))
            if min_bkts >= n_bkt:
                return self.next_bkt(max(int(min_bkts) + 1, n_bkt * 2))
            self.next_resize = int(n_bkt)
        return None


class HashOrder(object):
    """The iteration order of a libstdc++ unordered_map/set with string keys.

    `add(key)` inserts a key (no-op if present), as `operator[]`/`insert` do;
    iterating yields the keys in the order a range-for over the container did.
    The node list is kept as a doubly linked list (dicts of neighbours).
    """

    def __init__(self):
        self._policy = _RehashPolicy()
        self._bucket_count = 1
        self._hash = {}         # key -> hash code
        self._clear_list()

    def _clear_list(self):
        self._head = None
        self._next, self._prev = {}, {}
        self._first = {}        # bucket -> its first node in the list

    def __contains__(self, key):
        return key in self._hash

    def __len__(self):
        return len(self._hash)

    def __iter__(self):
        order, node = [], self._head
        while node is not None:
            order.append(node)
            node = self._next[node]
        return iter(order)

    def add(self, key):
        if key in self._hash:
            return
        new_count = self._policy.need_rehash(self._bucket_count, len(self._hash), 1)
        if new_count is not None:
            self._rehash(new_count)
        self._hash[key] = hash_bytes(key)
        self._place(key)

    def _place(self, key):
        """A node goes to the front of its bucket's run, or to the list head when
        its bucket is empty (_M_insert_bucket_begin; _M_rehash_aux does the same)."""
        bucket = self._hash[key] % self._bucket_count
        after = self._first.get(bucket, self._head)
        before = None if after is None else self._prev[after]
        self._prev[key], self._next[key] = before, after
        if after is not None:
            self._prev[after] = key
        if before is None:
            self._head = key
        else:
            self._next[before] = key
        self._first[bucket] = key

    def _rehash(self, count):
        old = list(self)
        self._bucket_count = count
        self._clear_list()
        for key in old:
            self._place(key)


# --- std::push_heap / std::pop_heap with std::greater (a min-heap) ---------------

def _push_up(heap, hole, top, value):
    parent = (hole - 1) // 2
    while hole > top and heap[parent] > value:
        heap[hole] = heap[parent]
        hole = parent
        parent = (hole - 1) // 2
    heap[hole] = value


def push_heap(heap):
    """std::push_heap(begin, end, std::greater<>()) after a push_back."""
    _push_up(heap, len(heap) - 1, 0, heap[-1])


def pop_heap(heap):
    """std::pop_heap(begin, end, std::greater<>()): the smallest moves to the back."""
    length = len(heap)
    if length <= 1:
        return
    last = length - 1
    value = heap[last]
    heap[last] = heap[0]
    # __adjust_heap(first, 0, last, value)
    hole, child, n = 0, 0, last
    while child < (n - 1) // 2:
        child = 2 * (child + 1)
        if heap[child] > heap[child - 1]:
            child -= 1
        heap[hole] = heap[child]
        hole = child
    if (n & 1) == 0 and child == (n - 2) // 2:
        child = 2 * (child + 1)
        heap[hole] = heap[child - 1]
        hole = child - 1
    _push_up(heap, hole, 0, value)
