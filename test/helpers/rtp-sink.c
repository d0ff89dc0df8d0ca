/*
 * RTP sink for large-room tests and benches: binds N UDP sockets on 127.0.0.1 and counts RTP
 * packets per SSRC (received, and expected = highest - first extended sequence number + 1).
 * A Node socket drops packets past ~100k packets/s; this takes them in batches (recvmmsg), so
 * the sink is not what limits a room of thousands of listeners on a 2-core machine.
 *
 * It drains its sockets every POLL_US instead of sleeping on them: a UDP socket with a sleeping
 * reader makes each arriving packet wake it, and on loopback that wake-up is charged to the
 * sender, the mediasoup worker under test (about a wake-up per two packets, ~14 % of its CPU when
 * the sink slept in epoll_wait). Remote listeners cost a worker no such thing, so the measured
 * worker should not pay it either. Sockets nobody waits on take packets without waking anyone.
 * After IDLE_PASSES empty passes (no traffic for ~100 ms) it does sleep on them, so an idle sink
 * (a small test's, or between a bench's rounds) costs nothing; the first packet wakes it, and it
 * polls again.
 *
 *   rtp-sink <sockets>
 * prints the bound ports as one JSON array line, then answers lines on stdin:
 *   reset   -> every stream's counts restart; prints {"reset":true}
 *   streams -> prints [[ssrc,received,expected],...]
 * and exits at end of input.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_STREAMS 65536 /* a power of two, more than any test's listeners */
#define BATCH 64
#define POLL_US 1000 /* 50 packets/s per listener: ~10 per socket per pass at 6,000 listeners on 32 sockets */
#define MAX_SOCKETS 256
#define IDLE_PASSES 100

struct stream {
  uint32_t ssrc;
  int used;
  int64_t first, highest;
  uint64_t received;
};

static struct stream streams[MAX_STREAMS];

static struct stream *lookup(uint32_t ssrc) {
  uint32_t i = (ssrc * 2654435761u) & (MAX_STREAMS - 1);
  while (streams[i].used && streams[i].ssrc != ssrc) i = (i + 1) & (MAX_STREAMS - 1);
  return &streams[i];
}

static void count(const unsigned char *p, ssize_t n) {
  /* RTCP (payload types 200-204 sit where RTP's marker+PT byte is) is not counted. */
  if (n < 12 || (p[1] >= 192 && p[1] <= 223)) return;
  uint32_t ssrc = ((uint32_t)p[8] << 24) | ((uint32_t)p[9] << 16) | ((uint32_t)p[10] << 8) | p[11];
  int64_t seq = (p[2] << 8) | p[3];
  struct stream *s = lookup(ssrc);
  if (!s->used) {
    s->used = 1;
    s->ssrc = ssrc;
    s->first = s->highest = seq;
    s->received = 1;
    return;
  }
  int64_t ext = (s->highest - (s->highest & 0xffff)) + seq;
  if (ext < s->highest - 32768) ext += 65536;
  else if (ext > s->highest + 32768) ext -= 65536;
  if (ext > s->highest) s->highest = ext;
  if (ext < s->first) s->first = ext;
  s->received++;
}

static void command(const char *line) {
  if (strncmp(line, "reset", 5) == 0) {
    memset(streams, 0, sizeof streams);
    printf("{\"reset\":true}\n");
  } else if (strncmp(line, "streams", 7) == 0) {
    int first = 1;
    putchar('[');
    for (int i = 0; i < MAX_STREAMS; i++) {
      if (!streams[i].used) continue;
      printf("%s[%u,%llu,%lld]", first ? "" : ",", streams[i].ssrc, (unsigned long long)streams[i].received,
             (long long)(streams[i].highest - streams[i].first + 1));
      first = 0;
    }
    printf("]\n");
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1;
  if (n < 1 || n > MAX_SOCKETS) return 2;
  struct pollfd waits[MAX_SOCKETS + 1]; /* stdin, then every socket: drained in turn, and slept on while idle */
  printf("[");
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int size = 8 * 1024 * 1024; /* capped by net.core.rmem_max */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || getsockname(fd, (struct sockaddr *)&addr, &len) != 0) return 3;
    printf("%s%d", i ? "," : "", ntohs(addr.sin_port));
    waits[i + 1] = (struct pollfd){.fd = fd, .events = POLLIN};
  }
  waits[0] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
  printf("]\n");
  fflush(stdout);

  static unsigned char bufs[BATCH][1500];
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = sizeof bufs[i];
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  char line[256];
  size_t used = 0;
  const struct timespec pause = {.tv_sec = 0, .tv_nsec = POLL_US * 1000L};
  int empty_passes = 0;
  for (;;) {
    int packets = 0;
    for (int i = 1; i <= n; i++) {
      int got;
      while ((got = recvmmsg(waits[i].fd, msgs, BATCH, 0, NULL)) > 0) {
        for (int m = 0; m < got; m++) count(bufs[m], msgs[m].msg_len);
        packets += got;
      }
    }
    empty_passes = packets > 0 ? 0 : empty_passes + 1;
    /* Commands are answered between passes, so a count is never of half a pass. */
    if (poll(waits, 1, 0) > 0) {
      ssize_t got = read(STDIN_FILENO, line + used, sizeof line - 1 - used);
      if (got <= 0) return 0;
      used += (size_t)got;
      size_t start = 0;
      for (size_t i = 0; i < used; i++) {
        if (line[i] != '\n') continue;
        line[i] = 0;
        command(line + start);
        start = i + 1;
      }
      memmove(line, line + start, used - start);
      used -= start;
      if (used >= sizeof line - 1) used = 0;
    }
    if (empty_passes >= IDLE_PASSES) {
      poll(waits, (nfds_t)n + 1, -1);
      empty_passes = 0;
    } else {
      nanosleep(&pause, NULL);
    }
  }
}
