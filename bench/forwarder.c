/* The least a C program can do for the fan-in scenarios, as a floor to measure brokers against:
 * every PUBLISH is passed on unchanged to the last client that subscribed, and a QoS 1 PUBLISH is
 * acknowledged, right after each read. No routing, no sessions, no QoS 2: not a broker.
 * Built by bench/compare.ts with `cc -O2`. Usage: forwarder PORT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define READ_SIZE 65536

static unsigned char *rest[MAX_FD];
static int rest_len[MAX_FD];
static int v5[MAX_FD];
static int subscriber = -1;

/* blocking until all is written is fine for a floor: the generator always reads */
static void write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void handle(int fd, unsigned char *buf, int len) {
  static unsigned char forward[READ_SIZE * 2], acks[READ_SIZE];
  int pos = 0, nf = 0, na = 0;
  while (pos + 2 <= len) {
    int remaining = 0, mult = 1, i = pos + 1, complete = 0;
    for (int k = 0; k < 4 && i < len; k++, i++, mult *= 128) {
      remaining += (buf[i] & 127) * mult;
      if (!(buf[i] & 128)) { complete = 1; i++; break; }
    }
    if (!complete || i + remaining > len) break;
    int type = buf[pos] >> 4;
    if (type == 1) {
      v5[fd] = buf[i + 6] == 5;
      static const unsigned char ack4[] = {0x20, 2, 0, 0}, ack5[] = {0x20, 3, 0, 0, 0};
      if (v5[fd]) write_all(fd, ack5, sizeof ack5); else write_all(fd, ack4, sizeof ack4);
    } else if (type == 8) {
      subscriber = fd;
      unsigned char q = buf[i + remaining - 1] & 3;
      unsigned char a4[] = {0x90, 3, buf[i], buf[i + 1], q}, a5[] = {0x90, 4, buf[i], buf[i + 1], 0, q};
      if (v5[fd]) write_all(fd, a5, sizeof a5); else write_all(fd, a4, sizeof a4);
    } else if (type == 3) {
      if ((buf[pos] >> 1) & 3) {
        int id = i + 2 + ((buf[i] << 8) | buf[i + 1]);
        acks[na++] = 0x40; acks[na++] = 2; acks[na++] = buf[id]; acks[na++] = buf[id + 1];
      }
      memcpy(forward + nf, buf + pos, (size_t)(i + remaining - pos));
      nf += i + remaining - pos;
    }
    pos = i + remaining;
  }
  rest_len[fd] = len - pos;
  if (len > pos) {
    rest[fd] = realloc(rest[fd], (size_t)(len - pos));
    memcpy(rest[fd], buf + pos, (size_t)(len - pos));
  }
  if (nf > 0 && subscriber >= 0) write_all(subscriber, forward, (size_t)nf);
  if (na > 0) write_all(fd, acks, (size_t)na);
}

int main(int argc, char **argv) {
  int one = 1, listener = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argc > 1 ? argv[1] : "1883"))};
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 1024) != 0) return 1;
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  static unsigned char buf[READ_SIZE * 2];
  struct epoll_event events[64];
  for (;;) {
    int n = epoll_wait(ep, events, 64, -1);
    for (int e = 0; e < n; e++) {
      int fd = events[e].data.fd;
      if (fd == listener) {
        int c = accept(listener, NULL, NULL);
        if (c < 0) continue;
        if (c >= MAX_FD) { close(c); continue; }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        rest_len[c] = 0;
        v5[c] = 0;
        continue;
      }
      int have = rest_len[fd];
      if (have > READ_SIZE) { close(fd); continue; }
      if (have > 0) memcpy(buf, rest[fd], (size_t)have);
      ssize_t r = read(fd, buf + have, READ_SIZE);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        close(fd);
        if (fd == subscriber) subscriber = -1;
        rest_len[fd] = 0;
        continue;
      }
      handle(fd, buf, have + (int)r);
    }
  }
}
