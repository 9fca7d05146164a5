from configparser import ConfigParser
from pathlib import Path
import setuptools, shlex, shutil
from setuptools.command.build_py import build_py

# Metadata lives in settings.ini (nbdev 2); this file only turns it into setuptools arguments.
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o:cfg[o] for o in cfg_keys}

licenses = {'apache2': ('Apache Software License 2.0','OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
app_requirements = shlex.split(cfg.get('app_requirements', ''))
maps_requirements = shlex.split(cfg.get('maps_requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))

class build_py_with_tutorials(build_py):
    "Also copy nbs/tutorials/*.ipynb into the build as agrinb/tutorials/ (package data read by `agrinb tutorials`)."
    def run(self):
        super().run()
        dst = Path(self.build_lib) / cfg['lib_path'] / 'tutorials'
        dst.mkdir(parents=True, exist_ok=True)
        for nb in sorted(Path(cfg['nbs_path'], 'tutorials').glob('*.ipynb')): shutil.copy2(nb, dst / nb.name)

setuptools.setup(
    name = cfg['lib_name'],
    **setup_cfg,
    license = lic[0],
    classifiers = [
        'Development Status :: ' + statuses[int(cfg['status']) - 1],   # status = 3 -> '3 - Alpha'
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: '+o for o in py_versions[py_versions.index(min_python):]] + (['License :: ' + lic[1] ] if lic[1] else []),
    url = cfg['git_url'],
    packages = setuptools.find_packages(include=['agrinb', 'agrinb.*']),
    include_package_data = True,
    package_data = {'agrinb': ['resources/*', 'configs/*.yaml']},
    install_requires = requirements,
    extras_require = {'app': app_requirements, 'maps': maps_requirements, 'dev': dev_requirements},
    license_files = ['LICENSE'],
    cmdclass = {'build_py': build_py_with_tutorials},
    dependency_links = cfg.get('dep_links','').split(),
    python_requires = '>=' + cfg['min_python'],
    long_description = open('README.md', encoding='utf-8').read(),
    long_description_content_type = 'text/markdown',
    zip_safe = False,
    entry_points = {
        'console_scripts': cfg.get('console_scripts','').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d']
    },
)
