/*
 * Interface facts for link discovery: names, indexes, flags, MTU, speed,
 * driver, what the OS says the medium is, bridge members, and addresses.
 *
 * Why C: the stdlib has if_nameindex() but no flags, MTU, speed, driver,
 * bridge membership or prefix lengths, and the ioctls that give them take
 * OS-specific structs that are clumsy and error-prone from Python.
 *
 * Rules kept here (see bolt.h, "netinfo" section):
 *  - results go into caller buffers of fixed-size records; no globals, no
 *    state between calls, nothing allocated except what getifaddrs() and
 *    if_nameindex() hand back (and free) within the call;
 *  - a fact the OS does not give is reported as unknown (-1, "" or
 *    BOLT_NI_MEDIUM_UNKNOWN), never guessed: classification is Python's job.
 *
 * Plain C99; clean with -std=c99 -Wall -Wextra -Wconversion.
 */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1 /* getifaddrs, if_nameindex, ioctl names, O_CLOEXEC */
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE 1 /* net/if.h hides ifreq/ifdrv under strict POSIX */
#endif

#include "bolt.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __linux__
#include <dirent.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <sys/stat.h>
#endif

#ifdef __APPLE__
#include <net/if_dl.h>
#include <net/if_mib.h>
#include <net/if_types.h>
#include <net/if_var.h>
#include <sys/sockio.h>
#include <sys/sysctl.h>
#endif

/* ------------------------------------------------------------ helpers */

/* Bounded copy that always terminates dst (n > 0). */
static void copy_str(char *dst, size_t n, const char *src)
{
    size_t len = 0;
    while (len + 1 < n && src[len] != '\0')
        len++;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* A datagram socket for interface ioctls; -1 if none can be made, in which
 * case ioctl facts are reported unknown rather than failing the listing. */
static int ctl_socket(void)
{
    int type = SOCK_DGRAM;
    int fd;
#ifdef SOCK_CLOEXEC
    type |= SOCK_CLOEXEC;
#endif
    fd = socket(AF_INET, type, 0);
    if (fd < 0)
        fd = socket(AF_INET6, type, 0);
    if (fd < 0)
        fd = socket(AF_UNIX, type, 0);
    return fd;
}

static void ifreq_for(struct ifreq *ifr, const char *name)
{
    memset(ifr, 0, sizeof *ifr);
    copy_str(ifr->ifr_name, sizeof ifr->ifr_name, name);
}

/* Leading one bits of a netmask of `len` bytes (a non-contiguous mask
 * counts up to its first zero bit, as `ip` and `ifconfig` print it). */
static int32_t mask_prefix(const unsigned char *m, size_t len)
{
    int32_t bits = 0;
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char b = m[i];
        if (b == 0xffu) {
            bits += 8;
            continue;
        }
        while (b & 0x80u) {
            bits++;
            b = (unsigned char)(b << 1);
        }
        break;
    }
    return bits;
}

/* ------------------------------------------------------------- Linux */
#ifdef __linux__

/* Read a short sysfs file into buf (NUL-terminated); 0 or -1. */
static int read_small(const char *path, char *buf, size_t n)
{
    ssize_t got;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    got = read(fd, buf, n - 1);
    close(fd);
    if (got < 0)
        return -1;
    buf[got] = '\0';
    return 0;
}

/* sysfs shows the network namespace it was mounted in, which need not be
 * ours (setns without a remount): only trust it when its ifindex for this
 * name is the one the kernel just gave us. */
static int sysfs_is_ours(const char *name, uint32_t index)
{
    char path[96], buf[32];
    unsigned long v;
    char *end;
    if (snprintf(path, sizeof path, "/sys/class/net/%s/ifindex", name) >=
        (int)sizeof path)
        return 0;
    if (read_small(path, buf, sizeof buf) != 0)
        return 0;
    errno = 0;
    v = strtoul(buf, &end, 10);
    if (errno != 0 || end == buf)
        return 0;
    return v == (unsigned long)index;
}

static int sysfs_exists(const char *name, const char *leaf)
{
    char path[96];
    struct stat st;
    if (snprintf(path, sizeof path, "/sys/class/net/%s/%s", name, leaf) >=
        (int)sizeof path)
        return 0;
    return stat(path, &st) == 0;
}

/* Members of a Linux bridge: the entries of /sys/class/net/<br>/brif. */
static void linux_bridge_members(bolt_ni_iface *it)
{
    char path[96];
    DIR *d;
    struct dirent *e;
    int32_t n = 0;
    if (snprintf(path, sizeof path, "/sys/class/net/%s/brif", it->name) >=
        (int)sizeof path)
        return;
    d = opendir(path);
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", ".."; interface names never start with '.' */
        if (n < BOLT_NI_MAX_MEMBERS)
            copy_str(it->members[n], BOLT_NI_NAME_LEN, e->d_name);
        if (n < INT32_MAX)
            n++;
    }
    closedir(d);
    it->n_members = n;
}

static void linux_fill(int fd, bolt_ni_iface *it)
{
    struct ifreq ifr;
    if (fd >= 0) {
        struct ethtool_drvinfo drv;
        struct ethtool_cmd ecmd;

        ifreq_for(&ifr, it->name);
        if (ioctl(fd, SIOCGIFHWADDR, &ifr) == 0)
            it->link_type = (int32_t)ifr.ifr_hwaddr.sa_family;

        /* ETHTOOL_GDRVINFO needs no privilege: veth says "veth", tun
         * "tun", Thunderbolt networking "thunderbolt-net". */
        memset(&drv, 0, sizeof drv);
        drv.cmd = ETHTOOL_GDRVINFO;
        ifreq_for(&ifr, it->name);
        ifr.ifr_data = (char *)&drv;
        if (ioctl(fd, SIOCETHTOOL, &ifr) == 0) {
            drv.driver[sizeof drv.driver - 1] = '\0';
            copy_str(it->driver, sizeof it->driver, drv.driver);
        }

        /* ETHTOOL_GSET (no privilege; the kernel maps it from
         * get_link_ksettings) is what /sys/class/net/<if>/speed reads
         * too.  0 and SPEED_UNKNOWN (all ones) mean unknown. */
        memset(&ecmd, 0, sizeof ecmd);
        ecmd.cmd = ETHTOOL_GSET;
        ifreq_for(&ifr, it->name);
        ifr.ifr_data = (char *)&ecmd;
        if (ioctl(fd, SIOCETHTOOL, &ifr) == 0) {
            uint32_t s = ((uint32_t)ecmd.speed_hi << 16) | (uint32_t)ecmd.speed;
            if (s != 0 && s != UINT32_MAX)
                it->speed_mbps = (int64_t)s;
        }
    }
    if (sysfs_is_ours(it->name, it->index)) {
        if (sysfs_exists(it->name, "wireless") ||
            sysfs_exists(it->name, "phy80211"))
            it->medium = BOLT_NI_MEDIUM_WIFI;
        if (sysfs_exists(it->name, "bridge")) {
            it->flags |= BOLT_NI_BRIDGE;
            linux_bridge_members(it);
        }
    }
}

#endif /* __linux__ */

/* ------------------------------------------------------------- macOS */
#ifdef __APPLE__
/*
 * Checked line by line against xnu (apple-oss-distributions/xnu, bsd/):
 *  - sys/sockio.h: SIOCGDRVSPEC = _IOWR('i', 123, struct ifdrv) and
 *    SIOCGIFFUNCTIONALTYPE = _IOWR('i', 173, struct ifreq) are public;
 *    SIOCGIFTYPE = _IOWR('i', 159, struct ifreq) is under PRIVATE, so it is
 *    defined here.  The private struct ifreq (net/if_private.h) has the
 *    same 32-byte size as the public one on LP64 (largest union members are
 *    16 bytes: sockaddr, ifkpi, ifru_log), so the encoded size matches; the
 *    kernel answers it for any process (net/if.c ifioctl: ift_type,
 *    ift_family, ift_subfamily as three uint32 at the start of the union).
 *  - net/if_private.h: IFRTYPE_SUBFAMILY_ USB 1, BLUETOOTH 2, WIFI 3,
 *    THUNDERBOLT 4; net/if.h: IFRTYPE_FUNCTIONAL_ LOOPBACK 1, WIRED 2,
 *    WIFI_INFRA 3, WIFI_AWDL 4, CELLULAR 5.
 *  - net/if.h: struct ifdrv is public, #pragma pack(4): ifd_name[IFNAMSIZ],
 *    unsigned long ifd_cmd, size_t ifd_len, void *ifd_data.
 *  - net/if_bridgevar.h (PRIVATE, mirrored below): BRDGGIFS = 6, struct
 *    ifbreq and struct ifbifconf under #pragma pack(4).  net/if_bridge.c:
 *    BRDGGIFS is BC_F_COPYIN|BC_F_COPYOUT (so it must go as SIOCGDRVSPEC),
 *    not BC_F_SUSER (no root needed), ifd_len must equal
 *    sizeof(struct ifbifconf64) == 12; ifbic_len == 0 asks for the size in
 *    bytes, otherwise it fills at most ifbic_len and sets it to the bytes
 *    written.
 *  - net/if_types.h: IFT_BRIDGE 0xd1.  net/if_mib.h: struct ifmibdata ends
 *    with struct if_data64 (u_int64_t ifi_baudrate); sysctl path
 *    net.link.generic.ifdata.<index>.general = {CTL_NET, PF_LINK,
 *    NETLINK_GENERIC, IFMIB_IFDATA, index, IFDATA_GENERAL}.
 *  - net/if.c (if_data_internal_to_if_data): getifaddrs' 32-bit
 *    if_data.ifi_baudrate saturates at 0xFFFFFFFF for >= 4.29 Gb/s, which
 *    every Thunderbolt link is; hence the 64-bit sysctl first.
 */
#ifndef SIOCGIFFUNCTIONALTYPE
#define SIOCGIFFUNCTIONALTYPE _IOWR('i', 173, struct ifreq)
#endif
#define BOLT_SIOCGIFTYPE _IOWR('i', 159, struct ifreq)

#define BOLT_IFRTYPE_SUBFAMILY_USB 1u
#define BOLT_IFRTYPE_SUBFAMILY_BLUETOOTH 2u
#define BOLT_IFRTYPE_SUBFAMILY_WIFI 3u
#define BOLT_IFRTYPE_SUBFAMILY_THUNDERBOLT 4u
#define BOLT_IFRTYPE_FUNCTIONAL_LOOPBACK 1u
#define BOLT_IFRTYPE_FUNCTIONAL_WIRED 2u
#define BOLT_IFRTYPE_FUNCTIONAL_WIFI_INFRA 3u
#define BOLT_IFRTYPE_FUNCTIONAL_WIFI_AWDL 4u
#define BOLT_IFRTYPE_FUNCTIONAL_CELLULAR 5u

#define BOLT_BRDGGIFS 6ul

#pragma pack(4)
struct bolt_ifbreq {              /* = struct ifbreq */
    char ifbr_ifsname[IFNAMSIZ];
    uint32_t ifbr_ifsflags;
    uint32_t ifbr_stpflags;
    uint32_t ifbr_path_cost;
    uint8_t ifbr_portno;
    uint8_t ifbr_priority;
    uint8_t ifbr_proto;
    uint8_t ifbr_role;
    uint8_t ifbr_state;
    uint32_t ifbr_addrcnt;
    uint32_t ifbr_addrmax;
    uint32_t ifbr_addrexceeded;
    uint8_t pad[32];
};
struct bolt_ifbifconf {           /* = struct ifbifconf (user side) */
    uint32_t ifbic_len;
    union {
        caddr_t ifbicu_buf;
        struct bolt_ifbreq *ifbicu_req;
    } ifbic_ifbicu;
};
#pragma pack()

/* C99 compile-time checks of the mirrored layouts (LP64 is all macOS runs). */
typedef char bolt_check_ifbreq[sizeof(struct bolt_ifbreq) == 80 ? 1 : -1];
#ifdef __LP64__
typedef char bolt_check_ifbifconf[sizeof(struct bolt_ifbifconf) == 12 ? 1 : -1];
typedef char bolt_check_ifdrv[sizeof(struct ifdrv) == 40 ? 1 : -1];
typedef char bolt_check_ifreq[sizeof(struct ifreq) == 32 ? 1 : -1];
#endif

static void apple_bridge_members(int fd, bolt_ni_iface *it)
{
    struct bolt_ifbreq reqs[64];
    struct bolt_ifbifconf bifc;
    struct ifdrv ifd;
    size_t total, got, i;

    memset(&bifc, 0, sizeof bifc); /* ifbic_len 0: how many bytes? */
    memset(&ifd, 0, sizeof ifd);
    copy_str(ifd.ifd_name, sizeof ifd.ifd_name, it->name);
    ifd.ifd_cmd = BOLT_BRDGGIFS;
    ifd.ifd_len = sizeof bifc;
    ifd.ifd_data = &bifc;
    if (ioctl(fd, SIOCGDRVSPEC, &ifd) < 0)
        return;
    total = bifc.ifbic_len / sizeof(struct bolt_ifbreq);

    memset(reqs, 0, sizeof reqs);
    bifc.ifbic_len = (uint32_t)sizeof reqs;
    bifc.ifbic_ifbicu.ifbicu_req = reqs;
    if (ioctl(fd, SIOCGDRVSPEC, &ifd) < 0)
        return;
    got = bifc.ifbic_len / sizeof(struct bolt_ifbreq);
    if (got > sizeof reqs / sizeof reqs[0])
        got = sizeof reqs / sizeof reqs[0];
    if (total < got)
        total = got; /* a member was added between the calls */
    for (i = 0; i < got && i < BOLT_NI_MAX_MEMBERS; i++) {
        reqs[i].ifbr_ifsname[IFNAMSIZ - 1] = '\0';
        copy_str(it->members[i], BOLT_NI_NAME_LEN, reqs[i].ifbr_ifsname);
    }
    it->n_members = total > (size_t)INT32_MAX ? INT32_MAX : (int32_t)total;
}

static void apple_fill(int fd, bolt_ni_iface *it, const struct ifaddrs *list)
{
    const struct ifaddrs *ifa;
    struct ifmibdata md;
    size_t len = sizeof md;
    int mib[6];
    struct ifreq ifr;

    /* getifaddrs' AF_LINK entry: type, MTU, and a 32-bit baudrate. */
    for (ifa = list; ifa != NULL; ifa = ifa->ifa_next) {
        const struct if_data *d;
        if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != AF_LINK ||
            ifa->ifa_data == NULL || strcmp(ifa->ifa_name, it->name) != 0)
            continue;
        d = (const struct if_data *)ifa->ifa_data;
        it->link_type = (int32_t)d->ifi_type;
        if (it->mtu < 0 && d->ifi_mtu <= (uint32_t)INT32_MAX)
            it->mtu = (int32_t)d->ifi_mtu;
        if (d->ifi_baudrate != 0 && d->ifi_baudrate != 0xFFFFFFFFu &&
            d->ifi_baudrate >= 1000000u)
            it->speed_mbps = (int64_t)(d->ifi_baudrate / 1000000u);
        break;
    }

    /* net.link.generic.ifdata.<index>.general: the 64-bit baudrate. */
    mib[0] = CTL_NET;
    mib[1] = PF_LINK;
    mib[2] = NETLINK_GENERIC;
    mib[3] = IFMIB_IFDATA;
    mib[4] = (int)it->index;
    mib[5] = IFDATA_GENERAL;
    memset(&md, 0, sizeof md);
    if (sysctl(mib, 6, &md, &len, NULL, 0) == 0 && len >= sizeof md) {
        it->link_type = (int32_t)md.ifmd_data.ifi_type;
        if (md.ifmd_data.ifi_baudrate >= 1000000u) /* quotient < 2^44 */
            it->speed_mbps = (int64_t)(md.ifmd_data.ifi_baudrate / 1000000u);
    }

    if (fd < 0)
        return;

    /* Public: what the interface is for (Wi-Fi vs wired). */
    ifreq_for(&ifr, it->name);
    if (ioctl(fd, SIOCGIFFUNCTIONALTYPE, &ifr) == 0) {
        uint32_t ft;
        memcpy(&ft, &ifr.ifr_ifru, sizeof ft);
        if (ft == BOLT_IFRTYPE_FUNCTIONAL_WIRED)
            it->medium = BOLT_NI_MEDIUM_WIRED;
        else if (ft == BOLT_IFRTYPE_FUNCTIONAL_WIFI_INFRA ||
                 ft == BOLT_IFRTYPE_FUNCTIONAL_WIFI_AWDL)
            it->medium = BOLT_NI_MEDIUM_WIFI;
        else if (ft == BOLT_IFRTYPE_FUNCTIONAL_CELLULAR)
            it->medium = BOLT_NI_MEDIUM_CELLULAR;
        else if (ft == BOLT_IFRTYPE_FUNCTIONAL_LOOPBACK)
            it->medium = BOLT_NI_MEDIUM_LOOPBACK;
    }

    /* Private but long-standing: the subfamily is the only kernel fact
     * that says "IP over Thunderbolt" for an en port. */
    ifreq_for(&ifr, it->name);
    if (ioctl(fd, BOLT_SIOCGIFTYPE, &ifr) == 0) {
        uint32_t t[3]; /* ift_type, ift_family, ift_subfamily */
        memcpy(t, &ifr.ifr_ifru, sizeof t);
        if (t[2] == BOLT_IFRTYPE_SUBFAMILY_THUNDERBOLT)
            it->medium = BOLT_NI_MEDIUM_THUNDERBOLT;
        else if (t[2] == BOLT_IFRTYPE_SUBFAMILY_WIFI)
            it->medium = BOLT_NI_MEDIUM_WIFI;
        else if (t[2] == BOLT_IFRTYPE_SUBFAMILY_BLUETOOTH)
            it->medium = BOLT_NI_MEDIUM_BLUETOOTH;
        else if (t[2] == BOLT_IFRTYPE_SUBFAMILY_USB)
            it->medium = BOLT_NI_MEDIUM_WIRED;
    }

    if (it->link_type == IFT_BRIDGE) {
        it->flags |= BOLT_NI_BRIDGE;
        apple_bridge_members(fd, it);
    }
}

#endif /* __APPLE__ */

/* --------------------------------------------------------- interfaces */

static void fill_iface(int fd, bolt_ni_iface *it, const char *name,
                       unsigned int index, const struct ifaddrs *list)
{
    struct ifreq ifr;
    (void)list;
    memset(it, 0, sizeof *it);
    copy_str(it->name, sizeof it->name, name);
    it->index = (uint32_t)index;
    it->mtu = -1;
    it->medium = BOLT_NI_MEDIUM_UNKNOWN;
    it->link_type = -1;
    it->n_members = -1;
    it->speed_mbps = -1;

    if (fd >= 0) {
        ifreq_for(&ifr, name);
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
            /* ifr_flags is a short on both systems: take its bits. */
            unsigned int f = (unsigned int)(unsigned short)ifr.ifr_flags;
            if (f & IFF_UP)
                it->flags |= BOLT_NI_UP;
            if (f & IFF_RUNNING)
                it->flags |= BOLT_NI_RUNNING;
            if (f & IFF_LOOPBACK)
                it->flags |= BOLT_NI_LOOPBACK;
            if (f & IFF_POINTOPOINT)
                it->flags |= BOLT_NI_POINTOPOINT;
        }
        ifreq_for(&ifr, name);
        if (ioctl(fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
            it->mtu = (int32_t)ifr.ifr_mtu;
    }
#ifdef __linux__
    linux_fill(fd, it);
#endif
#ifdef __APPLE__
    apple_fill(fd, it, list);
#endif
    if (it->flags & BOLT_NI_LOOPBACK)
        it->medium = BOLT_NI_MEDIUM_LOOPBACK;
}

int bolt_ni_interfaces(bolt_ni_iface *out, size_t cap, size_t *needed)
{
    struct if_nameindex *ni, *p;
    struct ifaddrs *list = NULL;
    size_t n = 0;
    int fd;

    if (needed != NULL)
        *needed = 0;
    if (cap > 0 && out == NULL)
        return -EINVAL;
    errno = 0;
    ni = if_nameindex();
    if (ni == NULL)
        return errno != 0 ? -errno : -ENOMEM;
#ifdef __APPLE__
    if (getifaddrs(&list) != 0)
        list = NULL; /* AF_LINK data is a fallback only */
#endif
    fd = ctl_socket();
    for (p = ni; p->if_index != 0 && p->if_name != NULL; p++) {
        if (n < cap)
            fill_iface(fd, &out[n], p->if_name, p->if_index, list);
        n++;
    }
    if (fd >= 0)
        close(fd);
    if (list != NULL)
        freeifaddrs(list);
    if_freenameindex(ni);

    if (needed != NULL)
        *needed = n;
    if (n > cap)
        return -ENOSPC;
    return n > (size_t)INT_MAX ? -EOVERFLOW : (int)n;
}

/* ---------------------------------------------------------- addresses */

/* Prefix length of an ifa_netmask.  BSD routing sockets may hand back a
 * mask whose sa_len stops at its last non-zero byte (and whose family is
 * 0), so read only the bytes that are there; missing ones are zero. */
static int32_t netmask_prefix(const struct sockaddr *mask, int family)
{
    size_t off, full, avail;
    if (mask == NULL)
        return family == 4 ? 32 : 128;
    if (family == 4) {
        off = offsetof(struct sockaddr_in, sin_addr);
        full = 4;
    } else {
        off = offsetof(struct sockaddr_in6, sin6_addr);
        full = 16;
    }
#ifdef __APPLE__
    avail = (size_t)mask->sa_len > off ? (size_t)mask->sa_len - off : 0;
#else
    avail = full;
#endif
    if (avail > full)
        avail = full;
    return mask_prefix((const unsigned char *)mask + off, avail);
}

int bolt_ni_addresses(bolt_ni_addr *out, size_t cap, size_t *needed)
{
    struct ifaddrs *list, *ifa;
    size_t n = 0;

    if (needed != NULL)
        *needed = 0;
    if (cap > 0 && out == NULL)
        return -EINVAL;
    if (getifaddrs(&list) != 0)
        return errno != 0 ? -errno : -ENOMEM;
    for (ifa = list; ifa != NULL; ifa = ifa->ifa_next) {
        const struct sockaddr *sa = ifa->ifa_addr;
        unsigned int index;
        bolt_ni_addr *a;
        if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
            continue;
        /* Linux labels secondary IPv4 addresses "eth0:1"; SIOCGIFINDEX
         * (behind if_nametoindex) drops the ":1", giving eth0's index. */
        index = if_nametoindex(ifa->ifa_name);
        if (index == 0)
            continue; /* interface went away mid-listing */
        if (n >= cap) {
            n++;
            continue;
        }
        a = &out[n];
        memset(a, 0, sizeof *a);
        a->index = (uint32_t)index;
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
            a->family = 4;
            if (inet_ntop(AF_INET, &sin->sin_addr, a->addr, sizeof a->addr) == NULL)
                continue; /* slot reused by the next address */
            a->prefixlen = netmask_prefix(ifa->ifa_netmask, 4);
        } else {
            struct sockaddr_in6 sin6;
            memcpy(&sin6, sa, sizeof sin6);
            a->family = 6;
            a->scope_id = (uint32_t)sin6.sin6_scope_id;
#ifdef __APPLE__
            /* KAME: link-local addresses from the kernel carry the scope
             * in bytes 2-3 of the address (fe80:4::1); move it out. */
            if (IN6_IS_ADDR_LINKLOCAL(&sin6.sin6_addr) ||
                IN6_IS_ADDR_MC_LINKLOCAL(&sin6.sin6_addr)) {
                uint32_t embedded = ((uint32_t)sin6.sin6_addr.s6_addr[2] << 8) |
                                    (uint32_t)sin6.sin6_addr.s6_addr[3];
                if (a->scope_id == 0)
                    a->scope_id = embedded;
                sin6.sin6_addr.s6_addr[2] = 0;
                sin6.sin6_addr.s6_addr[3] = 0;
            }
#endif
            if (inet_ntop(AF_INET6, &sin6.sin6_addr, a->addr, sizeof a->addr) == NULL)
                continue;
            a->prefixlen = netmask_prefix(ifa->ifa_netmask, 6);
        }
        n++;
    }
    freeifaddrs(list);

    if (needed != NULL)
        *needed = n;
    if (n > cap)
        return -ENOSPC;
    return n > (size_t)INT_MAX ? -EOVERFLOW : (int)n;
}
