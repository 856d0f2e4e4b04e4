"One import for users: `from fastcam.all import *`"
from fastcam.cam import *
from fastcam.tasks import *
from fastcam.capture import *
from fastcam.interpret import *
from fastcam.plots import *
from fastcam.history import *
from fastcam.tensorboard import *
from fastcam.callback import *
from fastcam.metrics import *
from fastcam.classes import *
from fastcam.data import *
from fastcam.texts import *
from fastcam.features import *
from fastcam.report import *
from fastcam.attributions import *
