/* Interface-bound TCP sockets: create, bind to a device, connect and accept
 * with deadlines.  A socket bound to an interface can only use that
 * interface: if it is gone the call fails, it is never routed elsewhere. */
#include "bolt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef __APPLE__
/* xnu bsd/netinet/in.h: IP_BOUND_IF 25; bsd/netinet6/in6.h: IPV6_BOUND_IF
 * 125.  Both take an unsigned int interface index at the protocol level. */
#ifndef IP_BOUND_IF
#define IP_BOUND_IF 25
#endif
#ifndef IPV6_BOUND_IF
#define IPV6_BOUND_IF 125
#endif
#endif

typedef union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr_storage ss;
} any_addr;

static int parse_addr(const char *ip, uint16_t port, unsigned ifindex,
                      any_addr *a, socklen_t *len)
{
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, ip, &a->v4.sin_addr) == 1) {
        a->v4.sin_family = AF_INET;
        a->v4.sin_port = htons(port);
        *len = sizeof a->v4;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &a->v6.sin6_addr) == 1) {
        a->v6.sin6_family = AF_INET6;
        a->v6.sin6_port = htons(port);
        if (IN6_IS_ADDR_LINKLOCAL(&a->v6.sin6_addr))
            a->v6.sin6_scope_id = ifindex;
        *len = sizeof a->v6;
        return 0;
    }
    return BOLT_EADDR;
}

int bolt_ifindex(const char *ifname)
{
    unsigned idx = if_nametoindex(ifname);
    return idx == 0 ? BOLT_ENOIF : (int)idx;
}

static int bind_to_interface(int fd, int family, const char *ifname,
                             unsigned ifindex)
{
#ifdef __APPLE__
    (void)ifname;
    if (family == AF_INET6)
        return setsockopt(fd, IPPROTO_IPV6, IPV6_BOUND_IF, &ifindex,
                          sizeof ifindex);
    return setsockopt(fd, IPPROTO_IP, IP_BOUND_IF, &ifindex, sizeof ifindex);
#else
    (void)family;
    (void)ifindex;
    return setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname,
                      (socklen_t)strlen(ifname) + 1);
#endif
}

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* Options every data socket gets: no Nagle, no SIGPIPE, sized buffers,
 * non-blocking (all waiting happens in poll with a deadline). */
static int tune(int fd, int sndbuf, int rcvbuf)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return -errno;
#ifdef __APPLE__
    if (setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) < 0)
        return -errno;
#endif
    if (sndbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) < 0)
        return -errno;
    if (rcvbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0)
        return -errno;
    return set_nonblocking(fd);
}

/* A socket of the address's family, bound to ifname when one is given. */
static int bound_socket(const char *ifname, const char *ip, uint16_t port,
                        any_addr *a, socklen_t *alen)
{
    unsigned ifindex = 0;
    int bound = ifname != NULL && ifname[0] != '\0';
    if (bound) {
        int idx = bolt_ifindex(ifname);
        if (idx < 0)
            return idx;
        ifindex = (unsigned)idx;
    }
    int rc = parse_addr(ip, port, ifindex, a, alen);
    if (rc < 0)
        return rc;
    int fd = socket(a->sa.sa_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
#ifdef FD_CLOEXEC
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
    if (bound && bind_to_interface(fd, a->sa.sa_family, ifname, ifindex) < 0) {
        rc = errno == ENODEV || errno == ENXIO ? BOLT_ENOIF : -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    int64_t deadline = bolt_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int64_t left = (deadline - bolt_now_ns()) / 1000000;
        if (left < 0)
            left = 0;
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

int bolt_connect(const char *ip, uint16_t port, const char *ifname,
                 int timeout_ms, int sndbuf, int rcvbuf)
{
    any_addr a;
    socklen_t alen;
    int fd = bound_socket(ifname, ip, port, &a, &alen);
    if (fd < 0)
        return fd;
    int rc = tune(fd, sndbuf, rcvbuf);
    if (rc < 0)
        goto fail;
    if (connect(fd, &a.sa, alen) < 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            rc = -errno;
            goto fail;
        }
        rc = wait_fd(fd, POLLOUT, timeout_ms);
        if (rc < 0)
            goto fail;
        int err = 0;
        socklen_t elen = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            err = errno;
        if (err != 0) {
            rc = -err;
            goto fail;
        }
    }
    return fd;
fail:
    close(fd);
    return rc;
}

int bolt_listen(const char *ip, uint16_t port, const char *ifname,
                int backlog)
{
    any_addr a;
    socklen_t alen;
    int fd = bound_socket(ifname, ip, port, &a, &alen);
    if (fd < 0)
        return fd;
    int one = 1, rc;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, &a.sa, alen) < 0 || listen(fd, backlog) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    rc = set_nonblocking(fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

static int format_addr(const any_addr *a, char *ip, size_t ip_len,
                       uint16_t *port)
{
    const void *src = a->sa.sa_family == AF_INET6 ? (const void *)&a->v6.sin6_addr
                                                  : (const void *)&a->v4.sin_addr;
    if (ip != NULL &&
        inet_ntop(a->sa.sa_family, src, ip, (socklen_t)ip_len) == NULL)
        return -errno;
    if (port != NULL)
        *port = ntohs(a->sa.sa_family == AF_INET6 ? a->v6.sin6_port
                                                  : a->v4.sin_port);
    return 0;
}

int bolt_accept(int lfd, int timeout_ms, int sndbuf, int rcvbuf,
                char *peer_ip, size_t peer_ip_len, uint16_t *peer_port)
{
    int64_t deadline = bolt_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int64_t left = (deadline - bolt_now_ns()) / 1000000;
        int rc = wait_fd(lfd, POLLIN, left < 0 ? 0 : (int)left);
        if (rc < 0)
            return rc;
        any_addr a;
        socklen_t alen = sizeof a;
        int fd = accept(lfd, &a.sa, &alen);
        if (fd < 0) {
            /* another acceptor won the race, or the peer gave up: wait on */
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                continue;
            return -errno;
        }
#ifdef FD_CLOEXEC
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
        rc = tune(fd, sndbuf, rcvbuf);
        if (rc == 0)
            rc = format_addr(&a, peer_ip, peer_ip_len, peer_port);
        if (rc < 0) {
            close(fd);
            return rc;
        }
        return fd;
    }
}

int bolt_local_addr(int fd, char *ip, size_t ip_len, uint16_t *port)
{
    any_addr a;
    socklen_t alen = sizeof a;
    if (getsockname(fd, &a.sa, &alen) < 0)
        return -errno;
    return format_addr(&a, ip, ip_len, port);
}

void bolt_close(int fd)
{
    if (fd < 0)
        return;
    (void)shutdown(fd, SHUT_RDWR);
    (void)close(fd);
}

int bolt_linger_close(int fd, int timeout_ms)
{
    if (fd < 0)
        return 0;
    /* FIN after our last frame, then read and drop what the peer still sends
     * until it closes too: its sends in flight complete instead of meeting a
     * reset, so it reads our GOODBYE rather than a broken pipe. */
    (void)shutdown(fd, SHUT_WR);
    int64_t deadline = bolt_now_ns() + (int64_t)timeout_ms * 1000000;
    char sink[4096];
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0)
            break;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break;
        if (n > 0)
            continue;
        int64_t left = (deadline - bolt_now_ns()) / 1000000;
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        (void)poll(&p, 1, (int)left);
    }
    (void)close(fd);
    return 0;
}
