#include "CHeap.h"
#include <stdlib.h>   // defines __GLIBC__ where the C library is glibc
#if defined(__GLIBC__)
#include <malloc.h>
#endif

reel_heap_stats reel_heap_stats_now(void) {
    reel_heap_stats s = {0};
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 m = mallinfo2();
    s.available = 1;
    s.arenaBytes = m.arena;
    s.mappedBytes = m.hblkhd;
    s.inUseBytes = m.uordblks;
    s.freeBytes = m.fordblks;
    s.topBytes = m.keepcost;
#endif
    return s;
}

int reel_heap_trim(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}

int reel_heap_set_mmap_threshold(size_t bytes) {
#if defined(__GLIBC__)
    if (bytes > (size_t)0x7fffffff) return 0;   // mallopt takes an int
    return mallopt(M_MMAP_THRESHOLD, (int)bytes);
#else
    (void)bytes;
    return 0;
#endif
}

int reel_heap_set_arena_max(int count) {
#if defined(__GLIBC__)
    if (count < 1) return 0;
    return mallopt(M_ARENA_MAX, count);
#else
    (void)count;
    return 0;
#endif
}
