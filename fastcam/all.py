"One import for users: `from fastcam.all import *`"
from fastcam.cam import *
from fastcam.callback import *
from fastcam.interpret import *
from fastcam.data import *
from fastcam.metrics import *
from fastcam.history import *
from fastcam.features import *
from fastcam.report import *
