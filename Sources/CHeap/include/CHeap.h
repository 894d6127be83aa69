// The C heap's own figures, its trim and its tuning (glibc's <malloc.h>, which Swift's Glibc module does not
// import). Elsewhere than glibc: no figures (`available` 0), no trim, and every setting refused.
#ifndef REEL_CHEAP_H
#define REEL_CHEAP_H

#include <stddef.h>

typedef struct {
    int available;       // 1 where the figures are glibc's
    size_t arenaBytes;   // mallinfo2.arena: bytes of the arenas' heaps (sbrk and mmapped heaps)
    size_t mappedBytes;  // mallinfo2.hblkhd: bytes in chunks mmapped on their own (large allocations)
    size_t inUseBytes;   // mallinfo2.uordblks: bytes allocated in the arenas
    size_t freeBytes;    // mallinfo2.fordblks: bytes free in the arenas, kept by malloc
    size_t topBytes;     // mallinfo2.keepcost: the main arena's top chunk, which a trim can give back
} reel_heap_stats;

/// Figures summed over every arena (mallinfo2 takes each arena's lock in turn).
reel_heap_stats reel_heap_stats_now(void);

/// malloc_trim(0): gives back to the system the free pages of every arena (not only the top of the main one).
/// 1 when some memory was released.
int reel_heap_trim(void);

/// mallopt(M_MMAP_THRESHOLD, bytes): allocations of at least `bytes` get pages of their own, unmapped on free.
/// Setting it stops glibc from raising the threshold by itself (up to 32 MiB). 1 on success; 0 for a value over
/// INT_MAX or where the C library is not glibc (glibc 2.36 takes any other value).
int reel_heap_set_mmap_threshold(size_t bytes);

/// mallopt(M_ARENA_MAX, count): at most `count` arenas (glibc's default: 8 per core). Arenas already made stay.
/// 1 on success; 0 where refused or not glibc.
int reel_heap_set_arena_max(int count);

#endif
