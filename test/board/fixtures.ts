// Fixture sysfs/procfs trees, one per board, with the strings those boards really expose.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface BoardTree {
  /** path under the root → contents (device-tree strings carry their NUL terminators). */
  files: Record<string, string>;
  /** thermal zones: [type, millidegrees] */
  zones?: Array<[string, number]>;
}

const cpuinfoA72 = (rev: string, model: string) =>
  [0, 1, 2, 3].map((i) => `processor\t: ${i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n`).join('\n') +
  `\nHardware\t: BCM2835\nRevision\t: ${rev}\nSerial\t\t: 10000000a1b2c3d4\nModel\t\t: ${model}\n`;

const meminfo = (kb: number) => `MemTotal:       ${kb} kB\nMemFree:         ${Math.floor(kb / 2)} kB\nMemAvailable:   ${Math.floor(kb * 0.7)} kB\n`;

export const TREES: Record<string, BoardTree> = {
  'pi-zero-2w': {
    files: {
      'proc/device-tree/model': 'Raspberry Pi Zero 2 W Rev 1.0\0',
      'proc/device-tree/compatible': 'raspberrypi,model-zero-2-w\0brcm,bcm2837\0',
      'proc/cpuinfo': cpuinfoA72('902120', 'Raspberry Pi Zero 2 W Rev 1.0'),
      'proc/meminfo': meminfo(427_044),
    },
    zones: [['cpu-thermal', 51_540]],
  },
  pi3: {
    files: {
      'proc/device-tree/model': 'Raspberry Pi 3 Model B Plus Rev 1.3\0',
      'proc/device-tree/compatible': 'raspberrypi,3-model-b-plus\0brcm,bcm2837\0',
      'proc/cpuinfo': cpuinfoA72('a020d3', 'Raspberry Pi 3 Model B Plus Rev 1.3'),
      'proc/meminfo': meminfo(945_364),
    },
    zones: [['cpu-thermal', 55_306]],
  },
  pi4: {
    files: {
      'proc/device-tree/model': 'Raspberry Pi 4 Model B Rev 1.4\0',
      'proc/device-tree/compatible': 'raspberrypi,4-model-b\0brcm,bcm2711\0',
      'proc/cpuinfo': cpuinfoA72('c03114', 'Raspberry Pi 4 Model B Rev 1.4'),
      'proc/meminfo': meminfo(3_884_400),
    },
    zones: [['cpu-thermal', 48_686]],
  },
  pi5: {
    files: {
      'proc/device-tree/model': 'Raspberry Pi 5 Model B Rev 1.0\0',
      'proc/device-tree/compatible': 'raspberrypi,5-model-b\0brcm,bcm2712\0',
      'proc/cpuinfo': cpuinfoA72('d04170', 'Raspberry Pi 5 Model B Rev 1.0'),
      'proc/meminfo': meminfo(8_245_152),
    },
    zones: [['cpu-thermal', 61_200]],
  },
  'jetson-nano': {
    files: {
      'proc/device-tree/model': 'NVIDIA Jetson Nano Developer Kit\0',
      'proc/device-tree/compatible': 'nvidia,p3450-0000\0nvidia,jetson-nano\0nvidia,tegra210\0',
      'proc/cpuinfo': [0, 1, 2, 3].map((i) => `processor\t: ${i}\nmodel name\t: ARMv8 Processor rev 1 (v8l)\nCPU architecture: 8\nCPU part\t: 0xd07\n`).join('\n'),
      'proc/meminfo': meminfo(4_059_272),
      'etc/nv_tegra_release': '# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, DATE: Fri Jun  9 04:25:08 UTC 2023\n',
    },
    // PMIC-Die always reads 100 °C on a Nano: it must be ignored.
    zones: [['AO-therm', 41_500], ['CPU-therm', 43_000], ['GPU-therm', 40_500], ['PLL-therm', 39_750], ['PMIC-Die', 100_000], ['thermal-fan-est', 42_350]],
  },
  'jetson-orin-nano': {
    files: {
      'proc/device-tree/model': 'NVIDIA Jetson Orin Nano Developer Kit\0',
      'proc/device-tree/compatible': 'nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0',
      'proc/cpuinfo': [0, 1, 2, 3, 4, 5].map((i) => `processor\t: ${i}\nBogoMIPS\t: 62.50\nCPU architecture: 8\nCPU part\t: 0xd42\n`).join('\n'),
      'proc/meminfo': meminfo(7_834_808),
      'etc/nv_tegra_release': '# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024\n',
    },
    zones: [['cpu-thermal', 50_281], ['gpu-thermal', 49_000], ['cv0-thermal', -256_000], ['soc0-thermal', 48_500], ['tj-thermal', 51_062]],
  },
  'generic-arm64': {
    // An ACPI arm64 server (no device tree).
    files: {
      'proc/cpuinfo': [0, 1].map((i) => `processor\t: ${i}\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0c\n`).join('\n'),
      'proc/meminfo': meminfo(2_010_000),
    },
  },
  'generic-x86': {
    files: {
      'proc/cpuinfo': `processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz\n`,
      'proc/meminfo': meminfo(16_314_000),
    },
    zones: [['acpitz', 27_800], ['x86_pkg_temp', 45_000]],
  },
};

export async function writeTree(root: string, tree: BoardTree): Promise<void> {
  for (const [rel, content] of Object.entries(tree.files)) {
    const p = join(root, rel);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, content, 'latin1');
  }
  for (const [i, [type, milli]] of (tree.zones ?? []).entries()) {
    await setZone(root, i, type, milli);
  }
}

export async function setZone(root: string, i: number, type: string, milli: number): Promise<void> {
  const d = join(root, 'sys/class/thermal', `thermal_zone${i}`);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'type'), `${type}\n`);
  await writeFile(join(d, 'temp'), `${milli}\n`);
}
